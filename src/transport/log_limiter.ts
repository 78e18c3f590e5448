/**
 * Rate limit for log lines a remote party can trigger at will (a misconfigured peer
 * redials all the time): a line per key at most once per interval, with the count of
 * the occurrences in between. Used by the peer transports and the client frontend.
 *
 * @example
 * ```ts
 * import { LogLimiter } from "./log_limiter.ts";
 * const limiter = new LogLimiter();
 * const due = limiter.due("10.0.0.7");
 * if (due !== null) console.warn("refused", { suppressedSinceLastLog: due.suppressed });
 * ```
 *
 * @module
 */

/** Default interval between two lines of one key. */
export const logIntervalMsDefault = 10_000;
/** Keys remembered at once; the oldest are forgotten beyond (their next line logs). */
const keysMax = 1_024;

/** Remembers, per key, when a line was last logged and how many were suppressed since. */
export class LogLimiter {
  readonly #intervalMs: number;
  readonly #nowMs: () => number;
  readonly #keys = new Map<string, { loggedAtMs: number; suppressed: number }>();

  constructor(
    options: { intervalMs?: number; nowMs?: () => number } = {},
  ) {
    this.#intervalMs = options.intervalMs ?? logIntervalMsDefault;
    this.#nowMs = options.nowMs ?? (() => performance.now());
  }

  /**
   * Whether a line for `key` is due now: null when one was logged less than the interval
   * ago (counted as suppressed), else the count suppressed since the last line.
   */
  due(key: string): { suppressed: number } | null {
    const nowMs = this.#nowMs();
    const last = this.#keys.get(key);
    if (last !== undefined && nowMs - last.loggedAtMs < this.#intervalMs) {
      last.suppressed++;
      return null;
    }
    this.#keys.delete(key);
    if (this.#keys.size >= keysMax) {
      const oldest = this.#keys.keys().next();
      if (oldest.done !== true) this.#keys.delete(oldest.value);
    }
    this.#keys.set(key, { loggedAtMs: nowMs, suppressed: 0 });
    return { suppressed: last?.suppressed ?? 0 };
  }
}

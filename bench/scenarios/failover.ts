/**
 * Scenario c, failover: one client loops acquire+release on one lock while the leader
 * is killed with SIGKILL, `kills` times. After each kill the killed member is restarted
 * and the cluster must be healthy again before the next kill. The gap of a kill is the
 * longest time between two consecutive completed pairs, from the last one before the
 * kill until the client has completed 20 pairs and at least 1 s has passed since the
 * kill: what a lock user sees as a stall (a pair in flight at the kill may complete
 * just after it, so the first completion after the kill is not the end of the stall).
 *
 * The client gives each acquire and release attempt `operationTimeoutMs` and retries
 * at once after a failure, the same for every system; a request stuck on a dead leader
 * therefore costs at most that long before it is retried.
 *
 * @module
 */
import { pollUntil, sleep, withTimeout } from "../process.ts";
import type { LockSession, SystemDriver } from "../systems/types.ts";
import { closeAll, connectAll, median, releaseWithRetry } from "./common.ts";

/** Parameters of one run of scenario c. */
export type FailoverParameters = {
  kills: number;
  runIndex: number;
  /** Steady-state time with the full cluster before each kill. */
  settleMs: number;
  /** Per-attempt acquire timeout of the looping client (it retries at once after). */
  operationTimeoutMs: number;
};

/** One kill. */
export type FailoverKill = { killedMember: number; gapMs: number; recovered: boolean };

/** Result of one run of scenario c. */
export type FailoverRun = {
  kills: FailoverKill[];
  medianGapMs: number;
  maxGapMs: number;
  pairs: number;
  errors: number;
  /** Sessions the client had to open again because the old one was lost. */
  reconnects: number;
  /** The first few distinct errors the client saw (for diagnosis). */
  errorSamples: string[];
};

/** How long after a kill we wait for the first success before calling it unrecovered. */
const recoveryTimeoutMs = 30_000;
/** Completed pairs, and time since the kill, after which the stall counts as over. */
const recoveryPairs = 20;
const recoveryWindowMs = 1_000;

/** Runs scenario c once. */
export async function runFailover(
  driver: SystemDriver,
  parameters: FailoverParameters,
): Promise<FailoverRun> {
  const [first] = await connectAll(driver, `c${parameters.runIndex}-`, 1);
  if (first === undefined) throw new Error("Cannot run failover as no session opened");
  let session: LockSession = first;
  const completions: number[] = [];
  let errors = 0;
  let reconnects = 0;
  const errorSamples: string[] = [];
  let stop = false;
  const name = `c-${parameters.runIndex}`;
  const loop = (async () => {
    let failingSinceMs = Number.NaN;
    while (!stop) {
      try {
        const held = await session.acquire(name, parameters.operationTimeoutMs);
        await releaseWithRetry(() => held.release(), 10_000, parameters.operationTimeoutMs);
        completions.push(performance.now());
        failingSinceMs = Number.NaN;
      } catch (error) {
        errors++;
        const text = (error instanceof Error ? `${error.name}: ${error.message}` : String(error))
          .slice(0, 300);
        if (errorSamples.length < 8 && !errorSamples.includes(text)) errorSamples.push(text);
        if (Number.isNaN(failingSinceMs)) failingSinceMs = performance.now();
        // A session that fails for longer than a TTL is gone; open a new one.
        if (performance.now() - failingSinceMs > 10_000) {
          const old = session;
          await withTimeout(old.close(), 2_000).catch(() => {});
          session = await driver.connect(`c${parameters.runIndex}-again-${reconnects}`)
            .catch(() => old);
          reconnects++;
          failingSinceMs = performance.now();
        }
        await sleep(10);
      }
    }
  })();
  const kills: FailoverKill[] = [];
  try {
    for (let kill = 0; kill < parameters.kills; kill++) {
      await sleep(parameters.settleMs);
      // Every member must be up (a crashed member would leave a kill without a quorum).
      await driver.waitHealthy(60_000);
      const leader = await driver.leaderIndex(20_000);
      const killMs = performance.now();
      await driver.killMember(leader);
      const recovered = await pollUntil(
        "the client to recover after the kill",
        () => {
          const after = completions.filter((at) => at > killMs);
          const last = after.at(-1);
          return Promise.resolve(
            after.length >= recoveryPairs && last !== undefined &&
              last >= killMs + recoveryWindowMs
              ? true
              : null,
          );
        },
        recoveryTimeoutMs,
        5,
      ).then(() => true, () => false);
      kills.push({ killedMember: leader, gapMs: longestGap(completions, killMs), recovered });
      driver.restartMember(leader);
      await driver.waitHealthy(60_000);
    }
  } finally {
    stop = true;
    await withTimeout(loop, 30_000, "failover client loop").catch(() => {});
    await closeAll([session]);
  }
  const gaps = kills.map((kill) => kill.gapMs);
  return {
    kills,
    medianGapMs: median(gaps),
    maxGapMs: Math.max(...gaps),
    pairs: completions.length,
    errors,
    reconnects,
    errorSamples,
  };
}

/**
 * Longest interval between consecutive completions from the last one at or before
 * `killMs` to the end (to now, if nothing completed after the kill).
 */
export function longestGap(completions: readonly number[], killMs: number): number {
  let firstAfter = completions.findIndex((at) => at > killMs);
  if (firstAfter < 0) firstAfter = completions.length;
  let previous = firstAfter > 0 ? completions[firstAfter - 1] ?? killMs : killMs;
  let longest = 0;
  for (let i = firstAfter; i < completions.length; i++) {
    const at = completions[i] ?? previous;
    longest = Math.max(longest, at - previous);
    previous = at;
  }
  if (firstAfter === completions.length) longest = performance.now() - previous;
  return longest;
}

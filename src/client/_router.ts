/**
 * Leader following for the client: keeps one stream (native by default, or gRPC) to
 * the server believed to be the leader, and runs each operation until it gets a definite answer. Private to
 * `src/client/`.
 *
 * - NOT_LEADER with a leader hint: switch to the hinted server and retry at once.
 * - NOT_LEADER without a hint, a broken stream, or UNAVAILABLE: try the next known
 *   member after a capped exponential backoff with full jitter.
 * - A peer that is not a dlock server (its first answer is not a dlock frame, e.g. an
 *   HTTP server): forget it and try the next member at once; INVALID_ARGUMENT when none
 *   is left.
 * - Everything else is a definite answer (a typed error or a result).
 *
 * Retrying is safe because the operation is rebuilt with the same request id: the
 * server answers a repeated (session, request id) with the original result.
 *
 * @module
 */
import {
  DlockError,
  type Downstream,
  DownstreamUnavailableError,
  type ErrorReason,
  InvalidArgumentError,
} from "../errors.ts";
import {
  type CallOutcome,
  type Connection,
  type PendingCall,
  StreamConnection,
  type TransportKind,
} from "./_connection.ts";
import { NativeStreamConnection } from "./_native_connection.ts";
import type { ErrorMessage, StatusResponse, StreamOperation, StreamResponse } from "./_proto.ts";
import { toTypedError } from "./_errors.ts";
import { serverAddressProblem } from "./_address.ts";

/** Receives the client's diagnostic messages. */
export type ClientLogger = {
  debug(message: string): void;
  warn(message: string): void;
};

/** A logger that drops everything. */
export const silentLogger: ClientLogger = { debug() {}, warn() {} };

/** How the router runs one operation. */
export type InvokeOptions = {
  /** What the operation does, for the error when retrying ends ("append to f5"). */
  action?: string;
  /** What failed, for that error (default "no dlock leader could be reached"). */
  failure?: string;
  /** Per-attempt bound; null for calls that legitimately wait (blocking acquire). */
  attemptTimeoutMs: number | null;
  /** Monotonic time (performance.now) after which retrying stops; null: no bound. */
  deadlineMs: number | null;
  /** Called before each attempt; a thrown error ends the operation with it. */
  beforeAttempt?: () => void;
  /** Called right after each attempt was sent (to cancel it later). */
  onSent?: (connection: Connection, call: PendingCall) => void;
};

/** Why the last attempt failed; `downstream` when a server answered but its filewriter did not. */
type Problem = { text: string; server: string; downstream: Downstream | null };

/** A definite answer and the monotonic time its (last) attempt was sent. */
export type InvokeResult = { response: StreamResponse; sentAtMs: number };

const backoffInitialMs = 25;
const backoffMaxMs = 1_000;
/**
 * How long a server whose stream broke is presumed down. A follower that has not yet
 * noticed the leader's death keeps naming it as the leader; without this, the client
 * would bounce between that follower and the dead leader until the election ends,
 * instead of asking the other members (one of which is the candidate).
 */
const presumedDownMs = 1_000;

/** Leader-following transport shared by one client's operations. */
export class Router {
  #members: string[];
  #target: string;
  #connection: Connection | null = null;
  #closed = false;
  readonly #downUntilMs = new Map<string, number>();
  readonly #logger: ClientLogger;
  readonly #transport: TransportKind;

  constructor(
    addresses: readonly string[],
    logger: ClientLogger,
    transport: TransportKind = "native",
  ) {
    if (transport !== "native" && transport !== "grpc") {
      throw new DlockError(
        "INVALID_ARGUMENT",
        `Cannot connect as the transport must be "native" or "grpc": received ${
          JSON.stringify(transport)
        }`,
      );
    }
    this.#transport = transport;
    const unique = [...new Set(addresses.map((address) => address.trim()).filter((a) => a !== ""))];
    if (unique.length === 0) {
      throw new DlockError("INVALID_ARGUMENT", "Cannot connect as no server address was given");
    }
    for (const address of unique) {
      // A malformed address would only be retried until the retry bound runs out.
      const problem = serverAddressProblem(address, "a server address");
      if (problem !== null) throw new DlockError("INVALID_ARGUMENT", problem);
    }
    this.#members = unique;
    this.#target = unique[0] as string;
    this.#logger = logger;
  }

  /** The server currently believed to be the leader. */
  get target(): string {
    return this.#target;
  }

  /** Every server known: the given addresses plus those learned from Status. */
  get members(): readonly string[] {
    return this.#members;
  }

  /** Learns members and the leader from a Status answer. */
  learn(status: StatusResponse): void {
    for (const member of status.members) this.#addMember(member.address);
    if (status.leader !== "") {
      this.#addMember(status.leader);
      this.#switchTo(status.leader);
    }
  }

  /**
   * Runs `build()` until a definite answer. Throws the typed error of a definite error
   * answer, or DlockError UNAVAILABLE when `deadlineMs` passes first.
   */
  async invoke(build: () => StreamOperation, options: InvokeOptions): Promise<InvokeResult> {
    let backoffMs = backoffInitialMs;
    let lastProblem: Problem = { text: "no attempt made", server: "", downstream: null };
    const startedMs = performance.now();
    for (let attempt = 0;; attempt++) {
      options.beforeAttempt?.();
      if (this.#closed) throw new DlockError("UNAVAILABLE", "Cannot send as the client is closed");
      if (options.deadlineMs !== null && performance.now() >= options.deadlineMs) {
        throw retriesExhausted(
          options.action ?? "complete the request",
          options.failure ?? "no dlock leader could be reached",
          lastProblem,
          attempt,
          performance.now() - startedMs,
        );
      }
      const connection = this.#connect();
      const sentAtMs = performance.now();
      const call = connection.call(build(), options.attemptTimeoutMs);
      options.onSent?.(connection, call);
      const outcome: CallOutcome = await call.outcome;
      const next = this.#judge(connection, outcome);
      if (next.kind === "done") return { response: next.response, sentAtMs };
      if (next.kind === "fail") throw next.error;
      lastProblem = next.problem;
      if (next.kind === "retry-now") {
        backoffMs = backoffInitialMs;
        continue;
      }
      this.#logger.debug(`retrying after: ${next.problem.text}`);
      await sleepMs(Math.random() * backoffMs);
      backoffMs = Math.min(backoffMs * 2, backoffMaxMs);
    }
  }

  /** Closes the current stream (pending calls are retried by their owners). */
  resetConnection(message: string): void {
    this.#connection?.close(message);
    this.#connection = null;
  }

  /** Closes everything; later invokes fail with UNAVAILABLE. */
  close(): void {
    this.#closed = true;
    this.resetConnection("client closed");
  }

  #judge(
    connection: Connection,
    outcome: CallOutcome,
  ):
    | { kind: "done"; response: StreamResponse }
    | { kind: "fail"; error: Error }
    | { kind: "retry-now" | "retry-later"; problem: Problem } {
    if (outcome.kind === "broken") {
      if (this.#connection === connection) this.#connection = null;
      if (outcome.notDlockServer === true) return this.#dropNotDlock(connection, outcome.message);
      this.#downUntilMs.set(connection.address, performance.now() + presumedDownMs);
      // Someone else already moved to another server: follow them without waiting.
      const problem = { text: outcome.message, server: connection.address, downstream: null };
      if (this.#target !== connection.address) return { kind: "retry-now", problem };
      this.#switchTo(this.#nextMember(connection.address));
      return { kind: "retry-later", problem };
    }
    const response = outcome.response;
    this.#downUntilMs.delete(connection.address);
    const error: ErrorMessage | null | undefined = response.error ?? response.keepAlive?.error;
    if (error === null || error === undefined || error.reason === "") {
      return { kind: "done", response };
    }
    const reason = error.reason as ErrorReason;
    if (reason === "NOT_LEADER") {
      const problem = {
        text: `${connection.address} is not the leader` +
          (error.leader === "" ? " and knows no leader" : ` (leader: ${error.leader})`),
        server: connection.address,
        downstream: null,
      };
      if (this.#target !== connection.address) return { kind: "retry-now", problem };
      if (
        error.leader !== "" && error.leader !== connection.address &&
        !this.#presumedDown(error.leader)
      ) {
        this.#addMember(error.leader);
        this.#switchTo(error.leader);
        return { kind: "retry-now", problem };
      }
      this.#switchTo(this.#nextMember(connection.address));
      return { kind: "retry-later", problem };
    }
    if (reason === "UNAVAILABLE") {
      const downstream = error.downstream?.service ? error.downstream : null;
      return {
        kind: "retry-later",
        problem: {
          text: `${connection.address}: ${error.message}`,
          server: connection.address,
          downstream,
        },
      };
    }
    return { kind: "fail", error: toTypedError(error) };
  }

  /**
   * Forgets a member that is not a dlock server (a wrong port, the filewriter's): retrying
   * it cannot help. Fails at once when no member is left.
   */
  #dropNotDlock(
    connection: Connection,
    message: string,
  ): { kind: "fail"; error: Error } | { kind: "retry-now"; problem: Problem } {
    const next = this.#nextMember(connection.address);
    this.#members = this.#members.filter((address) => address !== connection.address);
    if (this.#members.length === 0) {
      return { kind: "fail", error: new InvalidArgumentError(message) };
    }
    this.#logger.warn(message);
    if (this.#target === connection.address) {
      this.#switchTo(this.#members.includes(next) ? next : this.#members[0] as string);
    }
    return {
      kind: "retry-now",
      problem: { text: message, server: connection.address, downstream: null },
    };
  }

  #connect(): Connection {
    if (this.#connection !== null && !this.#connection.broken) return this.#connection;
    this.#connection = this.#transport === "native"
      ? new NativeStreamConnection(this.#target)
      : new StreamConnection(this.#target);
    this.#logger.debug(`connected a ${this.#transport} stream to ${this.#target}`);
    return this.#connection;
  }

  #switchTo(address: string): void {
    if (address === this.#target) return;
    this.#logger.debug(`following ${address} (was ${this.#target})`);
    this.#target = address;
    this.resetConnection(`switched to ${address}`);
  }

  #addMember(address: string): void {
    if (address !== "" && !this.#members.includes(address)) this.#members.push(address);
  }

  /** The member after `address`, skipping those presumed down unless all are. */
  #nextMember(address: string): string {
    const index = this.#members.indexOf(address);
    const count = this.#members.length;
    for (let step = 1; step <= count; step++) {
      const candidate = this.#members[(index + step) % count] as string;
      if (candidate !== address && !this.#presumedDown(candidate)) return candidate;
    }
    return this.#members[(index + 1) % count] as string;
  }

  #presumedDown(address: string): boolean {
    const until = this.#downUntilMs.get(address);
    return until !== undefined && performance.now() < until;
  }
}

/**
 * The error once retrying has run out: what could not be reached, by whom. When the last
 * attempt reached a server that could not reach its filewriter, the leader is not what is
 * down, so the message says so.
 */
function retriesExhausted(
  action: string,
  failure: string,
  problem: Problem,
  attempts: number,
  elapsedMs: number,
): DlockError {
  const retried = `retried for ${formatSeconds(elapsedMs)}`;
  const downstream = problem.downstream;
  if (downstream === null) {
    return new DlockError(
      "UNAVAILABLE",
      `Cannot ${action} as ${failure} (tried ${attempts} ${
        plural(attempts, "time")
      }; ${retried}; last: ${problem.text})`,
      { cause: new Error(problem.text) },
    );
  }
  const tried = downstream.attempts > 0
    ? `the leader ${problem.server} tried ${downstream.attempts} ${
      plural(downstream.attempts, "time")
    }`
    : `reported by the leader ${problem.server}`;
  return new DownstreamUnavailableError(
    `Cannot ${action} as the ${downstream.service} at ${downstream.address} is ${
      downstream.unreachable ? "unreachable" : "failing"
    } (${tried}; ${retried}): ${downstream.problem}`,
    { ...downstream },
    problem.server,
  );
}

function plural(count: number, word: string): string {
  return count === 1 ? word : `${word}s`;
}

function formatSeconds(durationMs: number): string {
  const seconds = durationMs / 1_000;
  return `${seconds >= 10 ? Math.round(seconds) : Math.round(seconds * 10) / 10} s`;
}

/** Resolves after `durationMs`. */
export function sleepMs(durationMs: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, durationMs));
}

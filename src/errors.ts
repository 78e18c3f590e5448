/**
 * Typed errors for conditions callers are expected to handle (STYLE.md, convention 6).
 * Each has a machine-readable `reason`, mapped to a gRPC status code in one place
 * (`src/server/grpc_errors.ts`) and back again in the client.
 *
 * Programming errors are not here: they use `invariant()` and crash.
 *
 * @module
 */

/** Machine-readable reasons, stable across versions (they travel in gRPC metadata). */
export type ErrorReason =
  | "NOT_LEADER"
  | "SESSION_EXPIRED"
  | "NOT_HOLDER"
  | "INVALID_ARGUMENT"
  | "TIMEOUT"
  | "CANCELLED"
  | "RESOURCE_EXHAUSTED"
  | "STALE_FENCE"
  | "UNAVAILABLE";

/** Base class of every expected dlock error. */
export class DlockError extends Error {
  readonly reason: ErrorReason;
  constructor(reason: ErrorReason, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "DlockError";
    this.reason = reason;
  }
}

/** This server is not the leader; `leader` is its best guess of who is (or null). */
export class NotLeaderError extends DlockError {
  readonly leader: string | null;
  constructor(leader: string | null, options?: ErrorOptions) {
    super(
      "NOT_LEADER",
      leader === null
        ? "Cannot serve the request as this server is not the leader: no leader is known"
        : `Cannot serve the request as this server is not the leader: the leader is ${leader}`,
      options,
    );
    this.name = "NotLeaderError";
    this.leader = leader;
  }
}

/** The session is unknown, closed or expired. */
export class SessionExpiredError extends DlockError {
  constructor(message: string, options?: ErrorOptions) {
    super("SESSION_EXPIRED", message, options);
    this.name = "SessionExpiredError";
  }
}

/**
 * The client gave up on its session: no keepalive was confirmed in time (cluster
 * unreachable, or this process paused). Its locks can no longer be used by this client,
 * but the cluster may still hold the session, and with it the locks, until it closes the
 * session (the client keeps asking it to) or expires it a TTL after it last heard from it.
 */
export class SessionPresumedLostError extends SessionExpiredError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "SessionPresumedLostError";
  }
}

/** The session does not hold the lock (or holds it with another token). */
export class NotHolderError extends DlockError {
  constructor(message: string, options?: ErrorOptions) {
    super("NOT_HOLDER", message, options);
    this.name = "NotHolderError";
  }
}

/** A request is malformed or out of range. */
export class InvalidArgumentError extends DlockError {
  constructor(message: string, options?: ErrorOptions) {
    super("INVALID_ARGUMENT", message, options);
    this.name = "InvalidArgumentError";
  }
}

/** A blocking acquire did not get the lock within its timeout. */
export class TimeoutError extends DlockError {
  constructor(message: string, options?: ErrorOptions) {
    super("TIMEOUT", message, options);
    this.name = "TimeoutError";
  }
}

/** A limit from `src/limits.ts` would be exceeded. */
export class ResourceExhaustedError extends DlockError {
  constructor(message: string, options?: ErrorOptions) {
    super("RESOURCE_EXHAUSTED", message, options);
    this.name = "ResourceExhaustedError";
  }
}

/** The storage refused a write whose fencing token is older than one it accepted. */
export class StaleFenceError extends DlockError {
  constructor(message: string, options?: ErrorOptions) {
    super("STALE_FENCE", message, options);
    this.name = "StaleFenceError";
  }
}

/** A service behind a dlock server (the filewriter) that the server could not reach. */
export type Downstream = {
  /** What it is: "filewriter". */
  readonly service: string;
  /** Where the server looked for it, as configured (e.g. `http://localhost:8080`). */
  readonly address: string;
  /** How many times the server tried it for this request (0: unknown). */
  readonly attempts: number;
  /** True when no attempt got an answer; false when it answered with a failure (5xx). */
  readonly unreachable: boolean;
  /** The last failure, e.g. "fetch failed" or "HTTP 503 …". */
  readonly problem: string;
};

/**
 * The dlock server answered, but a service it needed for the request (the filewriter)
 * could not be reached or failed. Retry-safe like any UNAVAILABLE, and retried by the
 * client the same way; kept apart from "no dlock server could be reached" so that a
 * message names what is actually down. `server` is the dlock server that reported it
 * (set by the client; null on the server itself).
 */
export class DownstreamUnavailableError extends DlockError {
  readonly downstream: Downstream;
  readonly server: string | null;
  constructor(
    message: string,
    downstream: Downstream,
    server: string | null = null,
    options?: ErrorOptions,
  ) {
    super("UNAVAILABLE", message, options);
    this.name = "DownstreamUnavailableError";
    this.downstream = downstream;
    this.server = server;
  }
}

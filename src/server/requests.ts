/**
 * Shapes of `dlock.v1.Lock` requests and responses as the server loads them (camelCase,
 * 64-bit integers as numbers, defaults filled in), and validation at the API edge:
 * every field is checked before anything is proposed, so bad input is a clear
 * INVALID_ARGUMENT and never reaches the log or crashes the server.
 *
 * @module
 */
import { InvalidArgumentError } from "../errors.ts";
import { fileNameProblem } from "../filewriter/validate.ts";
import { limits } from "../limits.ts";
import {
  clientNameError,
  lockNameError,
  openKeyError,
  resolveTtlMs,
  utf8ByteLength,
} from "../lock/validation.ts";

/** A validated OpenSession request; `ttlMs` resolved (0 → the server default). */
export interface OpenSessionRequest {
  readonly clientName: string;
  readonly ttlMs: number;
  readonly openKey: string;
}
/** A validated KeepAlive request. */
export interface KeepAliveRequest {
  readonly sessionId: number;
}
/** A validated CloseSession request. */
export interface CloseSessionRequest {
  readonly sessionId: number;
  readonly requestId: number;
}
/** A validated Acquire request. */
export interface AcquireRequest {
  readonly sessionId: number;
  readonly lock: string;
  readonly requestId: number;
  readonly wait: boolean;
  /** 0: no timeout. */
  readonly timeoutMs: number;
}
/** A validated Release request. */
export interface ReleaseRequest {
  readonly sessionId: number;
  readonly lock: string;
  readonly requestId: number;
  /** 0: any token. */
  readonly token: number;
}
/** A validated Append request. */
export interface AppendRequest {
  readonly sessionId: number;
  readonly lock: string;
  readonly token: number;
  readonly file: string;
  readonly data: Uint8Array;
  readonly requestId: string;
}
/** A validated Status request; `locksLimit` resolved (0 → 1000), 0 with `summaryOnly`. */
export interface StatusRequest {
  readonly locksLimit: number;
}

/** `dlock.v1.OpenSessionResponse`. */
export interface OpenSessionResponse {
  sessionId: number;
  ttlMs: number;
}
/** `dlock.v1.KeepAliveResponse` (without the error, which the edge adds). */
export interface KeepAliveResponse {
  sessionId: number;
  ttlMs: number;
}
/** `dlock.v1.CloseSessionResponse`. */
export interface CloseSessionResponse {
  released: string[];
}
/** `dlock.v1.AcquireResponse`. */
export interface AcquireResponse {
  acquired: boolean;
  token: number;
}
/** `dlock.v1.ReleaseResponse`. */
export interface ReleaseResponse {
  released: boolean;
}
/** `dlock.v1.AppendResponse`. */
export interface AppendResponse {
  offset: number;
  duplicate: boolean;
}
/** `dlock.v1.StatusResponse`. */
export interface StatusResponse {
  self: string;
  role: string;
  leader: string;
  term: number;
  commitIndex: number;
  appliedIndex: number;
  members: {
    address: string;
    isLeader: boolean;
    isSelf: boolean;
    contactKnown: boolean;
    lastContactMsAgo: number;
    matchIndex: number;
  }[];
  sessions: { id: number; clientName: string; ttlMs: number; held: number; waiting: number }[];
  locks: {
    name: string;
    holderSession: number;
    holderName: string;
    token: number;
    waiters: { sessionId: number; clientName: string }[];
  }[];
  lockCount: number;
  sessionCount: number;
  filewriter: string;
  electionTimeoutMs: number;
}

/** Default and largest `locks_limit` of Status. */
export const statusLocksLimitDefault = 1000;
const statusLocksLimitMax = 100_000;
/** Longest Append `request_id` in UTF-8 bytes. */
export const appendRequestIdBytesMax = 256;

type Fields = Record<string, unknown>;

function fields(request: unknown, operation: string): Fields {
  if (typeof request !== "object" || request === null) {
    throw new InvalidArgumentError(`Cannot ${operation} as the request is empty`);
  }
  return request as Fields;
}

function id(value: unknown, name: string, operation: string): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 1) {
    throw new InvalidArgumentError(
      `Cannot ${operation} as ${name} must be a positive integer below 2^53: received ${
        String(value)
      }`,
    );
  }
  return value;
}

function optionalNumber(value: unknown, name: string, operation: string): number {
  if (value === undefined || value === null || value === 0) return 0;
  return id(value, name, operation);
}

function check(problem: string | null, operation: string): void {
  if (problem !== null) {
    throw new InvalidArgumentError(
      problem.startsWith("Cannot") ? problem : `Cannot ${operation} as ${problem}`,
    );
  }
}

function lockName(value: unknown, operation: string): string {
  check(lockNameError(value), operation);
  return value as string;
}

/**
 * Validates an OpenSession request; a TTL of 0 becomes `defaultTtlMs`. An empty open key is replaced by a random one
 * (the open is then not deduplicated across retries).
 * @throws {InvalidArgumentError} naming the first bad field.
 */
export function parseOpenSession(
  request: unknown,
  defaultTtlMs: number = limits.sessionTtlMsDefault,
): OpenSessionRequest {
  const operation = "open the session";
  const f = fields(request, operation);
  const requestedTtlMs = f["ttlMs"] ?? 0;
  const ttlMs = requestedTtlMs === 0 ? defaultTtlMs : resolveTtlMs(requestedTtlMs);
  if (typeof ttlMs === "string") throw new InvalidArgumentError(ttlMs);
  check(clientNameError(f["clientName"] ?? ""), operation);
  check(openKeyError(f["openKey"] ?? ""), operation);
  const openKey = (f["openKey"] as string | undefined) ?? "";
  return {
    clientName: (f["clientName"] as string | undefined) ?? "",
    ttlMs,
    openKey: openKey === "" ? crypto.randomUUID() : openKey,
  };
}

/** Validates a KeepAlive request. @throws {InvalidArgumentError} */
export function parseKeepAlive(request: unknown): KeepAliveRequest {
  const operation = "keep the session alive";
  return { sessionId: id(fields(request, operation)["sessionId"], "session_id", operation) };
}

/** Validates a CloseSession request. @throws {InvalidArgumentError} */
export function parseCloseSession(request: unknown): CloseSessionRequest {
  const operation = "close the session";
  const f = fields(request, operation);
  return {
    sessionId: id(f["sessionId"], "session_id", operation),
    requestId: id(f["requestId"], "request_id", operation),
  };
}

/** Validates an Acquire request. @throws {InvalidArgumentError} */
export function parseAcquire(request: unknown): AcquireRequest {
  const operation = "acquire the lock";
  const f = fields(request, operation);
  const sessionId = id(f["sessionId"], "session_id", operation);
  const lock = lockName(f["lock"], operation);
  const requestId = id(f["requestId"], "request_id", operation);
  const wait = f["wait"] === true;
  const timeoutMs = optionalNumber(f["timeoutMs"], "timeout_ms", operation);
  return { sessionId, lock, requestId, wait, timeoutMs: wait ? timeoutMs : 0 };
}

/** Validates a Release request. @throws {InvalidArgumentError} */
export function parseRelease(request: unknown): ReleaseRequest {
  const operation = "release the lock";
  const f = fields(request, operation);
  return {
    sessionId: id(f["sessionId"], "session_id", operation),
    lock: lockName(f["lock"], operation),
    requestId: id(f["requestId"], "request_id", operation),
    token: optionalNumber(f["token"], "token", operation),
  };
}

/** Validates an Append request. @throws {InvalidArgumentError} */
export function parseAppend(request: unknown): AppendRequest {
  const operation = "append";
  const f = fields(request, operation);
  const sessionId = id(f["sessionId"], "session_id", operation);
  const lock = lockName(f["lock"], operation);
  const token = id(f["token"], "token", operation);
  const fileProblem = fileNameProblem(f["file"]);
  if (fileProblem !== null) {
    throw new InvalidArgumentError(
      `Cannot append as ${fileProblem}: received ${JSON.stringify(String(f["file"]).slice(0, 80))}`,
    );
  }
  const data = f["data"];
  if (!(data instanceof Uint8Array)) {
    throw new InvalidArgumentError("Cannot append as data is not bytes");
  }
  if (data.byteLength > limits.messageBytesMax) {
    throw new InvalidArgumentError(
      `Cannot append as data is larger than ${limits.messageBytesMax} bytes: received ${data.byteLength}`,
    );
  }
  const requestId = f["requestId"];
  if (
    typeof requestId !== "string" || requestId.length === 0 ||
    utf8ByteLength(requestId) > appendRequestIdBytesMax
  ) {
    throw new InvalidArgumentError(
      `Cannot append as request_id must be a string of 1 to ${appendRequestIdBytesMax} UTF-8 bytes: received ${
        JSON.stringify(String(requestId).slice(0, 80))
      }`,
    );
  }
  return { sessionId, lock, token, file: f["file"] as string, data, requestId };
}

/** Validates a Status request. @throws {InvalidArgumentError} */
export function parseStatus(request: unknown): StatusRequest {
  const operation = "report the status";
  const f = typeof request === "object" && request !== null ? request as Fields : {};
  const limit = optionalNumber(f["locksLimit"], "locks_limit", operation);
  if (f["summaryOnly"] === true) return { locksLimit: 0 };
  return {
    locksLimit: limit === 0 ? statusLocksLimitDefault : Math.min(limit, statusLocksLimitMax),
  };
}

/**
 * Maps an in-band `dlock.v1.Error` back to the typed errors of `src/errors.ts`.
 * Private to `src/client/`.
 *
 * @module
 */
import {
  DlockError,
  type ErrorReason,
  InvalidArgumentError,
  NotHolderError,
  NotLeaderError,
  ResourceExhaustedError,
  SessionExpiredError,
  StaleFenceError,
  TimeoutError,
} from "../errors.ts";
import type { ErrorMessage } from "./_proto.ts";

const knownReasons: ReadonlySet<string> = new Set<ErrorReason>([
  "NOT_LEADER",
  "SESSION_EXPIRED",
  "NOT_HOLDER",
  "INVALID_ARGUMENT",
  "TIMEOUT",
  "CANCELLED",
  "RESOURCE_EXHAUSTED",
  "STALE_FENCE",
  "UNAVAILABLE",
]);

/** The typed error for an in-band error answer. */
export function toTypedError(error: ErrorMessage): DlockError {
  const message = error.message !== "" ? error.message : `The server answered ${error.reason}`;
  switch (error.reason) {
    case "NOT_LEADER":
      return new NotLeaderError(error.leader === "" ? null : error.leader);
    case "SESSION_EXPIRED":
      return new SessionExpiredError(message);
    case "NOT_HOLDER":
      return new NotHolderError(message);
    case "INVALID_ARGUMENT":
      return new InvalidArgumentError(message);
    case "TIMEOUT":
      return new TimeoutError(message);
    case "RESOURCE_EXHAUSTED":
      return new ResourceExhaustedError(message);
    case "STALE_FENCE":
      return new StaleFenceError(message);
    default: {
      const reason: ErrorReason = knownReasons.has(error.reason)
        ? error.reason as ErrorReason
        : "UNAVAILABLE";
      return new DlockError(reason, message);
    }
  }
}

/** The error an aborted operation rejects with: the signal's reason, as fetch() does. */
export function abortError(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  if (reason instanceof Error) return reason;
  return new DOMException("The operation was aborted", "AbortError");
}

/**
 * The one place where dlock errors become gRPC errors (STYLE.md, convention 6).
 *
 * Unary calls fail with a status code and two metadata entries, `dlock-reason` and
 * `dlock-leader`; streams carry the same information in-band as a `dlock.v1.Error`.
 * Anything that is not a {@link DlockError} is a bug on our side: it is logged by the
 * caller and reported as INTERNAL without details of the server's state.
 *
 * @module
 */
// Types only: grpc-js is loaded when the first gRPC client connects (see grpc_api.ts).
import type * as grpc from "@grpc/grpc-js";
import {
  DlockError,
  type Downstream,
  DownstreamUnavailableError,
  type ErrorReason,
  NotLeaderError,
} from "../errors.ts";

/**
 * gRPC status code of each reason (the codes are fixed by the gRPC specification:
 * CANCELLED 1, INVALID_ARGUMENT 3, DEADLINE_EXCEEDED 4, NOT_FOUND 5,
 * RESOURCE_EXHAUSTED 8, FAILED_PRECONDITION 9, UNAVAILABLE 14).
 */
export const statusCodeByReason: Readonly<Record<ErrorReason, grpc.status>> = {
  NOT_LEADER: 14,
  SESSION_EXPIRED: 5,
  NOT_HOLDER: 9,
  INVALID_ARGUMENT: 3,
  TIMEOUT: 4,
  CANCELLED: 1,
  RESOURCE_EXHAUSTED: 8,
  STALE_FENCE: 9,
  UNAVAILABLE: 14,
};

/** The in-band error of streams (`dlock.v1.Error`). */
export interface ErrorMessage {
  reason: string;
  message: string;
  leader: string;
  /** Only for a {@link DownstreamUnavailableError}. */
  downstream?: Downstream;
}

/** Normalizes anything thrown by an operation into a {@link DlockError} (INTERNAL → UNAVAILABLE). */
export function asDlockError(error: unknown): { error: DlockError; unexpected: boolean } {
  if (error instanceof DlockError) return { error, unexpected: false };
  return {
    error: new DlockError(
      "UNAVAILABLE",
      "Cannot serve the request as the server failed internally",
      {
        cause: error,
      },
    ),
    unexpected: true,
  };
}

function leaderOf(error: DlockError): string {
  return error instanceof NotLeaderError ? error.leader ?? "" : "";
}

/** The in-band error message for a stream response. */
export function toErrorMessage(error: DlockError): ErrorMessage {
  const message: ErrorMessage = {
    reason: error.reason,
    message: error.message,
    leader: leaderOf(error),
  };
  if (error instanceof DownstreamUnavailableError) message.downstream = { ...error.downstream };
  return message;
}

/**
 * The gRPC error for a unary call, with `dlock-reason` and `dlock-leader` set in
 * `metadata` (a new, empty `grpc.Metadata`, which the caller creates: this module does
 * not load grpc-js).
 */
export function toServiceError(
  error: DlockError,
  metadata: grpc.Metadata,
): Partial<grpc.StatusObject> {
  metadata.set("dlock-reason", error.reason);
  metadata.set("dlock-leader", leaderOf(error));
  return { code: statusCodeByReason[error.reason], details: error.message, metadata };
}

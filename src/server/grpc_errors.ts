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
import * as grpc from "@grpc/grpc-js";
import { DlockError, type ErrorReason, NotLeaderError } from "../errors.ts";

/** gRPC status code of each reason. */
export const statusCodeByReason: Readonly<Record<ErrorReason, grpc.status>> = {
  NOT_LEADER: grpc.status.UNAVAILABLE,
  SESSION_EXPIRED: grpc.status.NOT_FOUND,
  NOT_HOLDER: grpc.status.FAILED_PRECONDITION,
  INVALID_ARGUMENT: grpc.status.INVALID_ARGUMENT,
  TIMEOUT: grpc.status.DEADLINE_EXCEEDED,
  CANCELLED: grpc.status.CANCELLED,
  RESOURCE_EXHAUSTED: grpc.status.RESOURCE_EXHAUSTED,
  STALE_FENCE: grpc.status.FAILED_PRECONDITION,
  UNAVAILABLE: grpc.status.UNAVAILABLE,
};

/** The in-band error of streams (`dlock.v1.Error`). */
export interface ErrorMessage {
  reason: string;
  message: string;
  leader: string;
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
  return { reason: error.reason, message: error.message, leader: leaderOf(error) };
}

/** The gRPC error for a unary call, with `dlock-reason` and `dlock-leader` metadata. */
export function toServiceError(error: DlockError): Partial<grpc.StatusObject> {
  const metadata = new grpc.Metadata();
  metadata.set("dlock-reason", error.reason);
  metadata.set("dlock-leader", leaderOf(error));
  return { code: statusCodeByReason[error.reason], details: error.message, metadata };
}

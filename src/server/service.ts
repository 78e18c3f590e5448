/**
 * The `dlock.v1.Lock` gRPC service: decodes and validates requests at the edge, calls
 * the one shared handler of each operation on {@link LockNode}, and maps errors in
 * one place (`grpc_errors.ts`). Unary RPCs and the multiplexed `Stream` share the same
 * handlers. Malformed input is an INVALID_ARGUMENT answer, never a crash.
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { DlockError } from "../errors.ts";
import { limits } from "../limits.ts";
import type { Logger } from "../log.ts";
import { asDlockError, type ErrorMessage, toErrorMessage, toServiceError } from "./grpc_errors.ts";
import type { AcquireControl, LockNode } from "./node.ts";
import {
  parseAcquire,
  parseAppend,
  parseCloseSession,
  parseKeepAlive,
  parseOpenSession,
  parseRelease,
  parseStatus,
} from "./requests.ts";

type UnknownRecord = Record<string, unknown>;

/** Pending blocking acquires on one stream, by call id, for CancelRequest. */
type StreamControls = Map<number, AcquireControl>;

/** One operation: validate, then run on the node. */
type Operation = (request: unknown, control: AcquireControl | null) => Promise<unknown>;

/** Stream oneof member → the operation serving it (keys as proto-loader names them). */
function operations(node: LockNode, defaultSessionTtlMs: number): Record<string, Operation> {
  return {
    openSession: (request) => node.openSession(parseOpenSession(request, defaultSessionTtlMs)),
    keepAlive: (request) => node.keepAlive(parseKeepAlive(request)),
    closeSession: (request) => node.closeSession(parseCloseSession(request)),
    acquire: (request, control) => node.acquire(parseAcquire(request), control ?? undefined),
    release: (request) => node.release(parseRelease(request)),
    append: (request) => node.append(parseAppend(request)),
    status: (request) => Promise.resolve(node.status(parseStatus(request))),
  };
}

/** Runs `operation`, turning synchronous throws into rejections. */
function run(
  operation: Operation,
  request: unknown,
  control: AcquireControl | null,
): Promise<unknown> {
  try {
    return operation(request, control);
  } catch (error) {
    return Promise.reject(error);
  }
}

/** Builds the handlers of `dlock.v1.Lock` for `grpc.Server.addService`. */
export function lockServiceHandlers(
  node: LockNode,
  logger: Logger,
  defaultSessionTtlMs: number = limits.sessionTtlMsDefault,
): grpc.UntypedServiceImplementation {
  const ops = operations(node, defaultSessionTtlMs);

  const toError = (error: unknown, operation: string): DlockError => {
    const { error: dlockError, unexpected } = asDlockError(error);
    if (unexpected) {
      logger.error("operation failed unexpectedly", {
        operation,
        error: String(error),
        stack: (error as Error)?.stack,
      });
    }
    return dlockError;
  };

  const unary = (name: string, withControl = false): grpc.handleUnaryCall<unknown, unknown> => {
    const operation = ops[name] as Operation;
    return (call, callback) => {
      let control: AcquireControl | null = null;
      if (withControl) {
        const created: AcquireControl = {};
        control = created;
        call.on("cancelled", () => created.cancel?.());
      }
      run(operation, call.request, control).then(
        (response) => callback(null, response),
        (error) => callback(toServiceError(toError(error, name))),
      );
    };
  };

  const keepAlive: grpc.handleBidiStreamingCall<unknown, unknown> = (call) => {
    let closed = false;
    const write = (message: unknown) => {
      if (!closed) call.write(message);
    };
    call.on("data", (request: unknown) => {
      const sessionId = Number((request as UnknownRecord | null)?.["sessionId"] ?? 0);
      run(ops["keepAlive"] as Operation, request, null).then(
        (response) => write({ ...(response as UnknownRecord), error: null }),
        (error) =>
          write({
            sessionId: Number.isFinite(sessionId) ? sessionId : 0,
            ttlMs: 0,
            error: toErrorMessage(toError(error, "keepAlive")),
          }),
      );
    });
    const close = () => {
      if (closed) return;
      closed = true;
      call.end();
    };
    call.on("end", close);
    call.on("error", () => {
      closed = true;
    });
    call.on("cancelled", () => {
      closed = true;
    });
  };

  const stream: grpc.handleBidiStreamingCall<unknown, unknown> = (call) => {
    let closed = false;
    const controls: StreamControls = new Map();
    const write = (message: unknown) => {
      if (!closed) call.write(message);
    };
    const writeError = (callId: number, error: ErrorMessage) => write({ callId, error });
    call.on("data", (request: UnknownRecord) => {
      const callId = typeof request?.["callId"] === "number" ? request["callId"] : 0;
      const op = request?.["op"];
      if (op === "cancel") {
        const target = (request["cancel"] as UnknownRecord | null)?.["callId"];
        if (typeof target === "number") controls.get(target)?.cancel?.();
        return;
      }
      if (typeof op !== "string" || ops[op] === undefined) {
        writeError(
          callId,
          toErrorMessage(
            new DlockError(
              "INVALID_ARGUMENT",
              "Cannot serve the stream request as it names no operation",
            ),
          ),
        );
        return;
      }
      let control: AcquireControl | null = null;
      if (op === "acquire") {
        control = {};
        controls.set(callId, control);
      }
      run(ops[op] as Operation, request[op], control).then(
        (response) => write({ callId, [op]: response }),
        (error) => writeError(callId, toErrorMessage(toError(error, op))),
      ).finally(() => {
        if (control !== null) controls.delete(callId);
      });
    });
    const close = () => {
      if (closed) return;
      closed = true;
      controls.clear();
      call.end();
    };
    call.on("end", close);
    // A broken stream does not withdraw its waits: the client retries them with the
    // same request ids on its next stream, and the session TTL covers a dead client.
    call.on("error", () => {
      closed = true;
      controls.clear();
    });
    call.on("cancelled", () => {
      closed = true;
      controls.clear();
    });
  };

  return {
    OpenSession: unary("openSession"),
    KeepAlive: keepAlive,
    CloseSession: unary("closeSession"),
    Acquire: unary("acquire", true),
    Release: unary("release"),
    Append: unary("append"),
    Status: unary("status"),
    Stream: stream,
  };
}

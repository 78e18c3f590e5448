/**
 * The `dlock.v1.Lock` gRPC service: decodes and validates requests at the edge, calls
 * the one shared handler of each operation on {@link LockNode}, and maps errors in
 * one place (`grpc_errors.ts`). Unary RPCs and the multiplexed `Stream` share the same
 * handlers, and the `Stream` semantics have one transport-agnostic implementation
 * ({@link LockApi.openStream}) served both over gRPC and over the native protocol
 * (`native.ts`). Malformed input is an INVALID_ARGUMENT answer, never a crash.
 *
 * @module
 */
// Types only: grpc-js is loaded when the first gRPC client connects (see grpc_api.ts).
import type * as grpc from "@grpc/grpc-js";
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

/** What a stream's transport offers its session: send one response, end the stream. */
export interface StreamPeer {
  /** Sends one `dlock.v1.StreamResponse` (proto-loader shape); dropped once ended. */
  write(response: Record<string, unknown>): void;
  /** Ends the stream from the server's side (native: closes the connection). */
  end(): void;
}

/** The server side of one multiplexed stream, whatever carries it. */
export interface StreamSession {
  /** Serves one decoded `dlock.v1.StreamRequest` (proto-loader shape, `op` set). */
  receive(request: unknown): void;
  /**
   * The transport ended (client gone, connection reset): later answers are dropped.
   * Pending waits are not withdrawn: the client retries them with the same request ids
   * on its next stream, and the session TTL covers a dead client.
   */
  close(): void;
}

/** Opens the server side of one stream on `peer`. */
export type OpenStream = (peer: StreamPeer) => StreamSession;

/**
 * The client API's operations on `node`, independent of the transport: the gRPC
 * service ({@link LockApi.grpcHandlers}) and the native protocol (src/server/native.ts)
 * both serve streams through {@link LockApi.openStream}, the one implementation of the
 * `Stream` semantics (call ids, any order, cancel, in-band errors).
 */
export class LockApi {
  readonly #ops: Record<string, Operation>;
  readonly #logger: Logger;

  constructor(
    node: LockNode,
    logger: Logger,
    defaultSessionTtlMs: number = limits.sessionTtlMsDefault,
  ) {
    this.#ops = operations(node, defaultSessionTtlMs);
    this.#logger = logger;
  }

  /** Opens the server side of one multiplexed stream. */
  readonly openStream: OpenStream = (peer) => {
    let closed = false;
    const controls: StreamControls = new Map();
    const ops = this.#ops;
    const write = (message: Record<string, unknown>) => {
      if (!closed) peer.write(message);
    };
    const writeError = (callId: number, error: ErrorMessage) => write({ callId, error });
    return {
      receive: (received: unknown) => {
        const request =
          (typeof received === "object" && received !== null ? received : {}) as UnknownRecord;
        const callId = typeof request["callId"] === "number" ? request["callId"] : 0;
        const op = request["op"];
        if (op === "cancel") {
          const target = (request["cancel"] as UnknownRecord | null)?.["callId"];
          if (typeof target === "number") controls.get(target)?.cancel?.();
          return;
        }
        if (typeof op !== "string" || !Object.hasOwn(ops, op)) {
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
          (error) => writeError(callId, toErrorMessage(this.#toError(error, op))),
        ).finally(() => {
          if (control !== null && controls.get(callId) === control) controls.delete(callId);
        });
      },
      close: () => {
        closed = true;
        controls.clear();
      },
    };
  };

  /**
   * The handlers of `dlock.v1.Lock` for `grpc.Server.addService`. `newMetadata` makes
   * an empty `grpc.Metadata` (for unary errors): the caller has grpc-js loaded.
   */
  grpcHandlers(newMetadata: () => grpc.Metadata): grpc.UntypedServiceImplementation {
    const ops = this.#ops;
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
          (error) => callback(toServiceError(this.#toError(error, name), newMetadata())),
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
              error: toErrorMessage(this.#toError(error, "keepAlive")),
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
      let ended = false;
      const session = this.openStream({
        write: (response) => {
          if (!ended) call.write(response);
        },
        end: () => {
          if (ended) return;
          ended = true;
          call.end();
        },
      });
      call.on("data", (request: unknown) => session.receive(request));
      call.on("end", () => {
        session.close();
        if (ended) return;
        ended = true;
        call.end();
      });
      call.on("error", () => {
        ended = true;
        session.close();
      });
      call.on("cancelled", () => {
        ended = true;
        session.close();
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

  #toError(error: unknown, operation: string): DlockError {
    const { error: dlockError, unexpected } = asDlockError(error);
    if (unexpected) {
      this.#logger.error("operation failed unexpectedly", {
        operation,
        error: String(error),
        stack: (error as Error)?.stack,
      });
    }
    return dlockError;
  }
}

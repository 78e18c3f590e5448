/**
 * A minimal `dlock.v1.Lock` gRPC client for server tests: promisified unary calls and
 * the `dlock-reason` / `dlock-leader` metadata of failures. Deliberately independent of
 * src/client, so server tests pin the wire contract.
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { loadPackageDefinition } from "../../src/transport/proto.ts";

/** A failed call: gRPC code, dlock reason and leader hint. */
export class CallError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    readonly leader: string,
    details: string,
  ) {
    super(`${reason || code}: ${details}`);
  }
}

type Unary = (
  request: unknown,
  metadata: grpc.Metadata,
  options: grpc.CallOptions,
  callback: (error: grpc.ServiceError | null, response: unknown) => void,
) => grpc.ClientUnaryCall;

// deno-lint-ignore no-explicit-any
type AnyRecord = Record<string, any>;

/** Unary calls to one server. */
export class LockTestClient {
  readonly client: grpc.Client;
  constructor(readonly address: string) {
    const loaded = grpc.loadPackageDefinition(loadPackageDefinition("lock.proto"));
    const dlock = loaded["dlock"] as grpc.GrpcObject;
    const v1 = dlock["v1"] as grpc.GrpcObject;
    const Lock = v1["Lock"] as unknown as typeof grpc.Client;
    this.client = new Lock(address, grpc.credentials.createInsecure(), {
      "grpc.initial_reconnect_backoff_ms": 50,
      "grpc.max_reconnect_backoff_ms": 500,
    });
  }

  /** Calls `method` with `request`; rejects with {@link CallError}. */
  call(method: string, request: AnyRecord, timeoutMs = 5_000): Promise<AnyRecord> {
    const fn = (this.client as unknown as Record<string, Unary>)[method];
    if (fn === undefined) throw new Error(`no method ${method}`);
    return new Promise((resolve, reject) => {
      fn.call(
        this.client,
        request,
        new grpc.Metadata(),
        { deadline: Date.now() + timeoutMs },
        (error, response) => {
          if (error === null) {
            resolve(response as AnyRecord);
            return;
          }
          const reason = String(error.metadata?.get("dlock-reason")[0] ?? "");
          const leader = String(error.metadata?.get("dlock-leader")[0] ?? "");
          reject(new CallError(error.code, reason, leader, error.details));
        },
      );
    });
  }

  /** Opens a bidi Stream call (tests of the multiplexed API). */
  stream(): grpc.ClientDuplexStream<AnyRecord, AnyRecord> {
    const client = this.client as unknown as Record<
      string,
      () => grpc.ClientDuplexStream<AnyRecord, AnyRecord>
    >;
    return (client["Stream"] as () => grpc.ClientDuplexStream<AnyRecord, AnyRecord>).call(
      this.client,
    );
  }

  close(): void {
    this.client.close();
  }
}

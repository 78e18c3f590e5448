/**
 * The internal grpc-js server of the client API (and of gRPC peer links), the one
 * module of the server that loads grpc-js.
 *
 * Why a module of its own: grpc-js costs every server ~3 MiB of heap and resident code
 * (measured: heap used 5.6 MiB with proto-loader alone, 7.9 MiB with grpc-js too), yet
 * dlock's own clients and peers never use it (native protocol, TCP peer links). So
 * `server.ts` imports this module dynamically when the first HTTP/2 connection reaches
 * the client port (or at start with `--peer-transport grpc`).
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { limits } from "../limits.ts";
import type { Logger } from "../log.ts";
import { LogLimiter } from "../transport/log_limiter.ts";
import { loadService } from "../transport/proto.ts";
import type { LockNode } from "./node.ts";
import { LockApi } from "./service.ts";

/** A new grpc-js server with dlock's message size and keepalive settings. */
export function createGrpcServer(): grpc.Server {
  return new grpc.Server({
    "grpc.max_receive_message_length": limits.messageBytesMax,
    "grpc.max_send_message_length": limits.messageBytesMax,
    "grpc.keepalive_permit_without_calls": 1,
    "grpc.http2.min_ping_interval_without_data_ms": 5_000,
  });
}

/**
 * Adds `dlock.v1.Lock` served by `api` to `server` and binds it to the Unix socket
 * `socketPath`.
 * @throws {Error} when the socket cannot be bound.
 */
export async function serveLockApi(
  server: grpc.Server,
  api: LockApi,
  socketPath: string,
): Promise<void> {
  server.addService(
    loadService("lock.proto", "Lock"),
    api.grpcHandlers(() => new grpc.Metadata()),
  );
  await new Promise<number>((resolve, reject) => {
    server.bindAsync(
      `unix:${socketPath}`,
      grpc.ServerCredentials.createInsecure(),
      (error, bound) => (error === null ? resolve(bound) : reject(error)),
    );
  });
}

/**
 * Adds a `dlock.v1.Peer` service to the gRPC server of a server whose peers use TCP
 * (`--peer-transport tcp`): a peer started with `--peer-transport grpc` sends its Raft
 * messages here, where nothing would take them and the cluster would never elect a
 * leader without a word. It is refused with UNIMPLEMENTED (the sender says so too) and
 * logged as an ERROR, once per sending member every 10 s.
 */
export function refuseGrpcPeers(server: grpc.Server, logger: Logger): void {
  const limiter = new LogLimiter();
  server.addService(loadService("peer.proto", "Peer"), {
    Send: (
      call: grpc.ServerReadableStream<{ from?: string }, unknown>,
      callback: grpc.sendUnaryData<unknown>,
    ) => {
      let finished = false;
      const refuse = (from: string | null) => {
        if (finished) return;
        finished = true;
        const due = from === null ? null : limiter.due(from);
        if (due !== null) {
          logger.error(
            `the peer at ${from} uses a different --peer-transport than this server: it sends ` +
              "Raft messages over gRPC, this server takes them over TCP on its peer port " +
              "(--peer-transport tcp); every server must use the same",
            { peer: from, refusedSinceLastLog: due.suppressed },
          );
        }
        const details = "Cannot take Raft messages over gRPC as this server uses " +
          "--peer-transport tcp: received a dlock.v1.Peer/Send stream";
        callback({ code: grpc.status.UNIMPLEMENTED, details, metadata: new grpc.Metadata() });
      };
      call.on("data", (batch: { from?: string }) => refuse(batch.from ?? "an unknown address"));
      call.on("end", () => refuse(null));
      call.on("error", () => refuse(null));
    },
  });
}

/** Builds the handlers of `dlock.v1.Lock` for `grpc.Server.addService`. */
export function lockServiceHandlers(
  node: LockNode,
  logger: Logger,
  defaultSessionTtlMs: number = limits.sessionTtlMsDefault,
): grpc.UntypedServiceImplementation {
  return new LockApi(node, logger, defaultSessionTtlMs).grpcHandlers(() => new grpc.Metadata());
}

/**
 * The running lock server (public surface of `src/server/`): {@link startServer} wires
 * storage, the Raft core, the lock state machine, the peer transport and the gRPC
 * client API into one node.
 *
 * @example
 * ```ts
 * import { startServer } from "./mod.ts";
 * import { createLogger } from "../log.ts";
 * const server = await startServer({
 *   self: "127.0.0.1:5000",
 *   members: ["127.0.0.1:5000", "127.0.0.1:5001", "127.0.0.1:5002"],
 *   filewriter: "localhost:8080",
 *   dataDir: "./data/127.0.0.1_5000/",
 *   heartbeatMs: 50,
 *   electionMs: 300,
 *   logger: createLogger(),
 * });
 * // ... on SIGTERM:
 * await server.shutdown();
 * ```
 *
 * @module
 */
export { type RunningServer, type ServerConfig, splitHostPort, startServer } from "./server.ts";
export {
  type AcquireControl,
  type FilewriterAppender,
  LockNode,
  type LockNodeOptions,
  type LogStorage,
  type RaftCore,
} from "./node.ts";
export { LockApi, type OpenStream, type StreamPeer, type StreamSession } from "./service.ts";
export { createGrpcServer, lockServiceHandlers, serveLockApi } from "./grpc_api.ts";
export { ClientFrontend, type ClientFrontendOptions } from "./native.ts";
export { clusterIdOf } from "./cluster_id.ts";
export { asDlockError, statusCodeByReason, toErrorMessage, toServiceError } from "./grpc_errors.ts";

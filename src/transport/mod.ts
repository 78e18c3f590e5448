/**
 * Peer transport: the {@link Transport} contract and its gRPC implementation.
 * @module
 */
export type { ReceiveHandler, Transport } from "./types.ts";
export { GrpcTransport, type GrpcTransportOptions } from "./grpc.ts";
export {
  peerAddressOf,
  peerPortOffsetDefault,
  TcpTransport,
  type TcpTransportOptions,
} from "./tcp.ts";
export { DecodeError, decodeMessage, encodeMessage } from "./codec.ts";
export { logIntervalMsDefault, LogLimiter } from "./log_limiter.ts";
export { loadPackageDefinition, loadService, type ProtoFile } from "./proto.ts";

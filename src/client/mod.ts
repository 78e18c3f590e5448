/**
 * The dlock client library: sessions, blocking FIFO locks with fencing tokens, and
 * fenced appends, over one multiplexed stream (native protocol by default, gRPC on
 * request) that follows the Raft leader.
 *
 * @example
 * ```ts
 * import { connect } from "./src/client/mod.ts";
 *
 * await using client = await connect(["127.0.0.1:5000"], { name: "worker-1", ttlMs: 10_000 });
 * await using lock = await client.acquire("jobs/42", { timeoutMs: 5_000 });
 * await lock.append("results", `token ${lock.token}\n`);
 * ```
 *
 * @module
 */
export { serverAddressProblem } from "./_address.ts";
export {
  type AcquireOptions,
  type AppendOptions,
  type AppendResult,
  type ClientLogger,
  connect,
  type ConnectOptions,
  DlockClient,
  fetchStatus,
  type LockHandle,
  type LockInfo,
  type Member,
  type MemberProbe,
  probeMembers,
  type SessionInfo,
  type StatusOptions,
  type StatusResponse,
  type TransportKind,
  type Waiter,
} from "./client.ts";
export {
  DlockError,
  type Downstream,
  DownstreamUnavailableError,
  type ErrorReason,
  InvalidArgumentError,
  NotHolderError,
  ResourceExhaustedError,
  SessionExpiredError,
  SessionPresumedLostError,
  StaleFenceError,
  TimeoutError,
} from "../errors.ts";

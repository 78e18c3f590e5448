/**
 * Starts a complete lock server: opens the data directory, restores Raft and the lock
 * state machine, binds the client API on the member address (one listener that serves
 * the native protocol and pipes gRPC connections to an internal grpc-js server on a
 * Unix socket in the data directory; see `native.ts`) and the peer transport (TCP, on the member
 * port + the peer port offset) and starts the Raft loop.
 * Once a burst of work is over, a {@link MemoryTrimmer} gives its memory back (see
 * `memory_trim.ts`). {@link RunningServer.shutdown} reverses it all, handing leadership
 * to a follower first.
 *
 * @module
 */
// Types only: grpc-js is loaded with grpc_api.ts, on the first gRPC connection.
import type * as grpc from "@grpc/grpc-js";
import { FilewriterClient, forwardingFilewriterOptions } from "../filewriter/client.ts";
import { limits, sessionTtlMsFloor } from "../limits.ts";
import { LockStateMachine } from "../lock/mod.ts";
import type { Logger } from "../log.ts";
import { RaftNode } from "../raft/mod.ts";
import type { NodeId } from "../raft/types.ts";
import { KvLogStorage } from "../storage/mod.ts";
import { peerAddressOf, TcpTransport } from "../transport/tcp.ts";
import type { Transport } from "../transport/types.ts";
import { clusterIdOf } from "./cluster_id.ts";
import { LockNode } from "./node.ts";
import { MemoryTrimmer } from "./memory_trim.ts";
import { ClientFrontend } from "./native.ts";
import { LockApi } from "./service.ts";

/** Configuration of one server (the CLI builds it from flags). */
export interface ServerConfig {
  /** This server's address (`host:port`): where it listens and its Raft id. */
  readonly self: NodeId;
  /** Every member, including `self`. */
  readonly members: readonly NodeId[];
  /** The filewriter (`host:port` or URL), or null for none. */
  readonly filewriter: string | null;
  readonly dataDir: string;
  /** TTL of sessions that ask for the default (TTL 0); default limits.sessionTtlMsDefault. */
  readonly defaultSessionTtlMs?: number;
  readonly heartbeatMs: number;
  readonly electionMs: number;
  readonly logger: Logger;
  /** Milliseconds per Raft tick (default 10). */
  readonly tickMs?: number;
  /** Applied entries between snapshots (default limits.logEntriesBeforeSnapshot). */
  readonly logEntriesBeforeSnapshot?: number;
  /** Peer port = client port + this (default 10000); the same on every server. */
  readonly peerPortOffset?: number;
  /**
   * How Raft messages travel between servers (the same on every server): "tcp" (default),
   * length-prefixed frames on the peer port; or "grpc", a client stream per peer on the
   * member port. "grpc" is exposed to denoland/deno#36788 (Deno 2.9.6 aborts inside
   * nghttp2 when an HTTP/2 session processes a GOAWAY, e.g. after a peer's kill -9 under
   * load), which is why it is not the default.
   */
  readonly peerTransport?: "tcp" | "grpc";
  /** Called when the node hits an unrecoverable error (default: log and exit 1). */
  readonly onFatal?: (error: unknown) => void;
}

/** A started server. */
export interface RunningServer {
  readonly node: LockNode;
  readonly clusterId: string;
  /** The port actually bound. */
  readonly port: number;
  /**
   * Transfers leadership (bounded wait), stops the loop, the peer transport and storage.
   * The caller then exits the process (sockets are left to the kernel, on purpose).
   */
  shutdown(): Promise<void>;
}

/**
 * The Unix socket of the internal gRPC server: in the data directory (which this server
 * has locked, so a leftover socket of an earlier run can go), or in a fresh temporary
 * directory when that path is too long for a socket address.
 */
function grpcSocketPath(dataDir: string): string {
  const inDataDir = `${Deno.realPathSync(dataDir)}/client-api-grpc.sock`;
  const path = new TextEncoder().encode(inDataDir).byteLength <= 100
    ? inDataDir
    : `${Deno.makeTempDirSync({ prefix: "dlock-" })}/grpc.sock`;
  try {
    Deno.removeSync(path);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return path;
}

/** Splits `host:port`; accepts `[v6]:port`. */
export function splitHostPort(address: string): { host: string; port: number } {
  const match = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(address);
  const port = match === null ? NaN : Number(match[2]);
  if (match === null || port > 65535) {
    throw new Error(
      `Cannot use the address as it is not host:port: received ${JSON.stringify(address)}`,
    );
  }
  return { host: match[1] as string, port };
}

/**
 * Starts a server.
 * @throws {StorageError} when the data directory is foreign, corrupt or locked.
 * @throws {Error} when the port cannot be bound.
 */
export async function startServer(config: ServerConfig): Promise<RunningServer> {
  const tickMs = config.tickMs ?? 10;
  const electionTicks = Math.max(2, Math.round(config.electionMs / tickMs));
  const members = [...new Set([...config.members, config.self])].sort();
  const clusterId = clusterIdOf(members);
  const logger = config.logger;
  const storage = await KvLogStorage.open({
    dataDir: config.dataDir,
    clusterId,
    nodeId: config.self,
  });
  let grpcServer: grpc.Server | null = null;
  let transport: Transport | null = null;
  let frontend: ClientFrontend | null = null;
  try {
    const restored = await storage.load();
    const machine = restored.snapshot === null
      ? new LockStateMachine()
      : LockStateMachine.restore(restored.snapshot.data);
    const raft = new RaftNode({
      id: config.self,
      voters: members,
      electionTicks,
      heartbeatTicks: Math.max(1, Math.round(config.heartbeatMs / tickMs)),
      preVote: true,
      checkQuorum: true,
      entriesPerAppendMax: limits.entriesPerAppendMax,
      bytesPerAppendMax: limits.appendBytesMax,
      inflightAppendsMax: limits.inflightAppendsMax,
      readMode: "safe",
      leaseDriftTicks: 0,
      random: Math.random,
    }, restored);
    // gRPC peer links need the gRPC server from the start; otherwise it starts with the
    // first gRPC client (see grpc_api.ts).
    const grpcPeers = config.peerTransport === "grpc"
      ? {
        api: await import("./grpc_api.ts"),
        transport: await import("../transport/grpc.ts"),
      }
      : null;
    if (grpcPeers !== null) grpcServer = grpcPeers.api.createGrpcServer();
    try {
      transport = grpcPeers !== null && grpcServer !== null
        ? new grpcPeers.transport.GrpcTransport({
          self: config.self,
          peers: members.filter((member) => member !== config.self),
          clusterId,
          server: grpcServer,
          logger: logger.child({ component: "transport" }),
        })
        : new TcpTransport({
          self: config.self,
          peers: members.filter((member) => member !== config.self),
          clusterId,
          logger: logger.child({ component: "transport" }),
          ...(config.peerPortOffset === undefined ? {} : { peerPortOffset: config.peerPortOffset }),
        });
    } catch (error) {
      const peer = peerAddressOf(config.self, config.peerPortOffset);
      throw new Error(
        `Cannot listen for peers on ${peer.hostname}:${peer.port} (client port + peer port offset): ${
          error instanceof Error ? error.message : String(error)
        }`,
        { cause: error },
      );
    }
    const onFatal = config.onFatal ?? ((error: unknown) => {
      logger.error("stopping: unrecoverable error", { error: String(error) });
      Deno.exit(1);
    });
    const node = new LockNode({
      self: config.self,
      members,
      raft,
      storage,
      transport,
      machine,
      snapshotIndex: restored.snapshot?.meta.index ?? 0,
      restoredHardState: restored.hardState,
      filewriter: config.filewriter === null
        ? null
        : new FilewriterClient(config.filewriter, forwardingFilewriterOptions),
      filewriterAddress: config.filewriter ?? "",
      logger,
      tickMs,
      electionTimeoutMs: electionTicks * tickMs,
      sessionTtlMsMin: sessionTtlMsFloor(config),
      ...(config.logEntriesBeforeSnapshot === undefined
        ? {}
        : { logEntriesBeforeSnapshot: config.logEntriesBeforeSnapshot }),
      onFatal,
    });
    const api = new LockApi(
      node,
      logger,
      config.defaultSessionTtlMs ?? limits.sessionTtlMsDefault,
    );
    const { host, port } = splitHostPort(config.self);
    // gRPC is reached through the frontend only: it listens on a Unix socket (a TCP port,
    // even an ephemeral one, could be the port another server is about to bind).
    const grpcSocket = grpcSocketPath(config.dataDir);
    let grpcStarted: Promise<void> | null = null;
    /** Loads grpc-js and starts the internal gRPC server, once; retried after a failure. */
    const startGrpc = (): Promise<void> =>
      grpcStarted ??= (async () => {
        const grpcApi = grpcPeers?.api ?? await import("./grpc_api.ts");
        grpcServer ??= grpcApi.createGrpcServer();
        if (grpcPeers === null) {
          grpcApi.refuseGrpcPeers(grpcServer, logger.child({ component: "transport" }));
        }
        await grpcApi.serveLockApi(grpcServer, api, grpcSocket);
      })().catch((error: unknown) => {
        grpcStarted = null;
        if (grpcPeers === null) {
          // Start from scratch next time: this server may have the service added already.
          grpcServer?.forceShutdown();
          grpcServer = null;
        }
        throw error;
      });
    if (grpcPeers !== null) await startGrpc();
    const hostname = host === "localhost"
      ? "127.0.0.1"
      : host.startsWith("[")
      ? host.slice(1, -1)
      : host;
    try {
      frontend = new ClientFrontend({
        hostname,
        port,
        grpcAddress: { transport: "unix", path: grpcSocket },
        startGrpc,
        openStream: api.openStream,
        logger: logger.child({ component: "client-api" }),
      });
    } catch (error) {
      throw new Error(
        `Cannot listen for clients on ${config.self}: ${
          error instanceof Error ? error.message : String(error)
        }`,
        { cause: error },
      );
    }
    const boundPort = frontend.port;
    // Applied entries are the work that makes the heap grow (acquires, snapshots); once
    // they stop, the memory of the burst goes back to the system. Started before the
    // node: its first trim (the memory of the restore) pauses nobody. A leader pause
    // shorter than the election timeout minus two heartbeats cannot start an election.
    const trimmer = new MemoryTrimmer({
      activity: () => node.appliedIndex,
      logger: logger.child({ component: "memory" }),
      pauseMsMax: Math.max(0, config.electionMs - 2 * config.heartbeatMs),
    });
    node.start();
    const runningTransport = transport;
    let stopping: Promise<void> | null = null;
    return {
      node,
      clusterId,
      port: boundPort,
      shutdown() {
        stopping ??= (async () => {
          trimmer.stop();
          await node.transferLeadership(1_000);
          await node.stop();
          await runningTransport.close();
          storage.close();
          // The gRPC server is not shut down gracefully: that sends HTTP/2 GOAWAYs,
          // which make Deno 2.9.6 abort in the peers' and clients' processes (see
          // src/transport/_peer_worker.ts). The process exits next; the kernel closes
          // the sockets and clients retry elsewhere.
        })();
        return stopping;
      },
    };
  } catch (error) {
    await transport?.close();
    frontend?.close();
    grpcServer?.forceShutdown();
    storage.close();
    throw error;
  }
}

/**
 * `dlock server`: runs one lock server until SIGINT/SIGTERM.
 *
 * Two forms:
 * - the original: `dlock server SELF PEER... FILEWRITER` (first = this server, last =
 *   the filewriter, the rest = the other members);
 * - flags: `--listen host:port --peers a,b,c --filewriter host:port ...`.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { createLogger, type LogFormat, logFormats, type LogLevel, logLevels } from "../log.ts";
import { limits, sessionTtlMsFloor } from "../limits.ts";
import { StorageError } from "../storage/mod.ts";
import { type RunningServer, startServer } from "../server/server.ts";
import { peerAddressOf, peerPortConflict } from "../transport/tcp.ts";
import { checkServerAddress as address, UsageError, usageFailure } from "./_usage.ts";

const usage = `Usage:
  dlock server SELF PEER... FILEWRITER          (the original form)
  dlock server --listen HOST:PORT --peers A,B,C [--filewriter HOST:PORT] [options]

Runs one lock server of a Raft cluster. The members are SELF plus the peers; every
server of a cluster must be given the same member set.

Example (three servers and a filewriter on one machine):
  dlock server 127.0.0.1:5000 127.0.0.1:5001 127.0.0.1:5002 localhost:8080
  dlock server 127.0.0.1:5001 127.0.0.1:5000 127.0.0.1:5002 localhost:8080
  dlock server 127.0.0.1:5002 127.0.0.1:5000 127.0.0.1:5001 localhost:8080

Options:
  --listen HOST:PORT     this server's address (the client API; peers use PORT+10000)
  --peers LIST           comma-separated members (all of them, or only the others)
  --filewriter HOST:PORT the filewriter that Append forwards to (default localhost:8080)
  --data-dir DIR         Raft log and snapshots (default ./data/<host_port>/)
  --session-ttl SECONDS  TTL of sessions that ask for the default (default ${
  limits.sessionTtlMsDefault / 1000
},
                         allowed ${limits.sessionTtlMsMin / 1000}..${
  limits.sessionTtlMsMax / 1000
}).
                         It must outlast a failover: at least
                         4/3 x (4 x --election-ms + --heartbeat-ms), or the server
                         refuses to start; sessions asking for less are granted
                         that minimum (1.67 s with the default timings)
  --heartbeat-ms MS      Raft heartbeat interval (default 50)
  --election-ms MS       Raft election timeout base, randomised to [MS, 2*MS) (default 300)
  --peer-port-offset N   Raft traffic between servers uses TCP port (member port + N),
                         or (member port - N) above 65535; same N on every server
                         (default 10000); refused when a peer port would be a
                         member's client port or another member's peer port
  --peer-transport KIND  tcp (default): Raft frames over TCP on the peer port; or grpc:
                         a gRPC stream per peer on the member port (exposed to a Deno
                         2.9.6 HTTP/2 abort, denoland/deno#36788); same on every server
  --snapshot-entries N   applied entries between snapshots that compact the log
                         (default ${limits.logEntriesBeforeSnapshot})
  --log-format FORMAT    text (default) or json (one object per line)
  --log-level LEVEL      debug, info (default), warn or error
  -h, --help             show this help

Stops cleanly on SIGINT/SIGTERM (a leader hands leadership to a follower first).
Exit codes: 0 stopped cleanly, 1 cannot start (bad data directory, port in use), 2 usage.`;

/** Parsed command line. */
export interface ServerArgs {
  self: string;
  members: string[];
  filewriter: string;
  dataDir: string;
  sessionTtlMs: number | null;
  heartbeatMs: number;
  electionMs: number;
  snapshotEntries: number;
  peerPortOffset: number;
  peerTransport: "tcp" | "grpc";
  logFormat: LogFormat;
  logLevel: LogLevel;
}

function positiveInteger(value: string | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  const number = Number(value);
  if (!Number.isInteger(number) || number <= 0) {
    throw new UsageError(`Cannot use ${name} as it must be a positive integer: received ${value}`);
  }
  return number;
}

function sessionTtlMs(seconds: string): number {
  const ttlMs = Number(seconds) * 1000;
  if (
    !Number.isInteger(ttlMs) || ttlMs < limits.sessionTtlMsMin || ttlMs > limits.sessionTtlMsMax
  ) {
    throw new UsageError(
      `Cannot use --session-ttl as it must be ${limits.sessionTtlMsMin / 1000}..${
        limits.sessionTtlMsMax / 1000
      } seconds: received ${seconds}`,
    );
  }
  return ttlMs;
}

/**
 * Refuses a default session TTL that a failover with these Raft timings outlasts (every
 * leader kill would lose every such session). Sessions asking for less than the floor
 * are raised to it by the leader; the default is the operator's own choice, so it is
 * refused rather than silently changed.
 */
function checkTtlCoversFailover(
  ttlMs: number | null,
  raft: { electionMs: number; heartbeatMs: number },
): void {
  const floorMs = sessionTtlMsFloor(raft);
  const effectiveMs = ttlMs ?? limits.sessionTtlMsDefault;
  if (effectiveMs >= floorMs) return;
  const given = ttlMs === null ? "the default --session-ttl" : "--session-ttl";
  throw new UsageError(
    `Cannot use ${given} of ${
      effectiveMs / 1000
    } s as a failover with --election-ms ${raft.electionMs} and --heartbeat-ms ${raft.heartbeatMs} can take longer (sessions under ${floorMs} ms would be lost on every leader change): received --session-ttl ${
      ttlMs === null ? "(unset)" : effectiveMs / 1000
    }; use --session-ttl ${Math.ceil(floorMs / 1000)} or more, or a shorter --election-ms`,
  );
}

/**
 * Parses the command line (both forms).
 * @throws {UsageError} with a message for the user.
 */
export function parseServerArgs(args: string[]): ServerArgs {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    strict: true,
    options: {
      listen: { type: "string" },
      peers: { type: "string" },
      filewriter: { type: "string" },
      "data-dir": { type: "string" },
      "session-ttl": { type: "string" },
      "heartbeat-ms": { type: "string" },
      "election-ms": { type: "string" },
      "snapshot-entries": { type: "string" },
      "peer-port-offset": { type: "string" },
      "peer-transport": { type: "string" },
      "log-format": { type: "string" },
      "log-level": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  let self: string;
  let peers: string[];
  let filewriter = values.filewriter === undefined
    ? "localhost:8080"
    : address(values.filewriter, "--filewriter");
  if (values.listen !== undefined) {
    if (positionals.length > 0) {
      throw new UsageError(
        `Cannot mix --listen with positional addresses: received ${positionals.join(" ")}`,
      );
    }
    self = address(values.listen, "--listen");
    peers = (values.peers ?? "").split(",").map((peer) => peer.trim()).filter((peer) =>
      peer !== ""
    );
  } else {
    if (positionals.length < 2) {
      throw new UsageError("Cannot start as SELF and FILEWRITER are required (or --listen)");
    }
    self = address(positionals[0] as string, "SELF");
    filewriter = address(positionals[positionals.length - 1] as string, "FILEWRITER");
    peers = positionals.slice(1, -1);
    if (values.peers !== undefined) {
      peers.push(
        ...values.peers.split(",").map((peer) => peer.trim()).filter((peer) => peer !== ""),
      );
    }
  }
  for (const peer of peers) address(peer, "a peer");
  const members = [...new Set([self, ...peers])];
  if (members.length % 2 === 0) {
    throw new UsageError(
      `Cannot start with ${members.length} members: use an odd number (1, 3, 5, 7) so a majority survives failures`,
    );
  }
  const peerTransport = values["peer-transport"] ?? "tcp";
  if (peerTransport !== "tcp" && peerTransport !== "grpc") {
    throw new UsageError(`Cannot use --peer-transport ${peerTransport}: use tcp or grpc`);
  }
  const logFormat = values["log-format"] ?? "text";
  if (!(logFormats as readonly string[]).includes(logFormat)) {
    throw new UsageError(`Cannot use --log-format ${logFormat}: use text or json`);
  }
  const logLevel = values["log-level"] ?? "info";
  if (!(logLevels as readonly string[]).includes(logLevel)) {
    throw new UsageError(`Cannot use --log-level ${logLevel}: use debug, info, warn or error`);
  }
  const heartbeatMs = positiveInteger(values["heartbeat-ms"], "--heartbeat-ms", 50);
  const electionMs = positiveInteger(values["election-ms"], "--election-ms", 300);
  if (electionMs < 2 * heartbeatMs) {
    throw new UsageError(
      `Cannot use --election-ms ${electionMs} as it must be at least twice --heartbeat-ms ${heartbeatMs}`,
    );
  }
  const peerPortOffset = positiveInteger(
    values["peer-port-offset"],
    "--peer-port-offset",
    10_000,
  );
  const conflict = peerTransport === "tcp" ? peerPortConflict(members, peerPortOffset) : null;
  if (conflict !== null) {
    throw new UsageError(
      `Cannot use --peer-port-offset ${peerPortOffset} with members ${
        members.join(",")
      } as ${conflict}: received --peer-port-offset ${peerPortOffset}; pick an offset that maps no member port onto another`,
    );
  }
  const ttlSeconds = values["session-ttl"];
  const ttlMs = ttlSeconds === undefined ? null : sessionTtlMs(ttlSeconds);
  checkTtlCoversFailover(ttlMs, { electionMs, heartbeatMs });
  return {
    self,
    members,
    filewriter,
    dataDir: values["data-dir"] ?? `./data/${self.replace(/[:\[\]]/g, "_")}/`,
    sessionTtlMs: ttlMs,
    heartbeatMs,
    electionMs,
    snapshotEntries: positiveInteger(
      values["snapshot-entries"],
      "--snapshot-entries",
      limits.logEntriesBeforeSnapshot,
    ),
    peerPortOffset,
    peerTransport,
    logFormat: logFormat as LogFormat,
    logLevel: logLevel as LogLevel,
  };
}

/**
 * Checks server flags that another command passes through to every server it starts (as
 * `dlock cluster up` does with `--session-ttl`, `--election-ms` and `--heartbeat-ms`), by
 * the same rules as `dlock server`, so a bad value is a usage error before anything runs.
 * @param flags the flags as they will be passed, e.g. `["--session-ttl", "0"]`.
 * @throws {UsageError} with the message `dlock server` would print.
 */
export function checkServerFlags(flags: string[]): void {
  // A one-member cluster at a placeholder address: only the flags can fail.
  parseServerArgs(["--listen", "127.0.0.1:1", ...flags]);
}

/** Runs `dlock server`; returns the exit code. */
export async function run(args: string[]): Promise<number> {
  if (args.includes("--help") || args.includes("-h")) {
    console.log(usage);
    return 0;
  }
  let parsed: ServerArgs;
  try {
    parsed = parseServerArgs(args);
  } catch (error) {
    return usageFailure("server", usage, error);
  }
  const logger = createLogger({ format: parsed.logFormat, level: parsed.logLevel });
  let server: RunningServer;
  try {
    server = await startServer({
      self: parsed.self,
      members: parsed.members,
      filewriter: parsed.filewriter,
      dataDir: parsed.dataDir,
      heartbeatMs: parsed.heartbeatMs,
      electionMs: parsed.electionMs,
      logEntriesBeforeSnapshot: parsed.snapshotEntries,
      peerPortOffset: parsed.peerPortOffset,
      peerTransport: parsed.peerTransport,
      ...(parsed.sessionTtlMs === null ? {} : { defaultSessionTtlMs: parsed.sessionTtlMs }),
      logger,
    });
  } catch (error) {
    if (error instanceof StorageError) {
      logger.error(`Cannot start as the data directory cannot be used: ${error.message}`, {
        dataDir: error.dataDir,
      });
    } else {
      logger.error(`Cannot start: ${error instanceof Error ? error.message : String(error)}`);
    }
    return 1;
  }
  const peer = peerAddressOf(parsed.self, parsed.peerPortOffset);
  logger.info(`serving on ${parsed.self}`, {
    peers: parsed.peerTransport === "grpc"
      ? `gRPC on ${parsed.self}`
      : `${peer.hostname}:${peer.port}`,
    dataDir: parsed.dataDir,
    members: parsed.members.join(","),
    filewriter: parsed.filewriter,
    clusterId: server.clusterId,
  });
  const stopped = Promise.withResolvers<void>();
  const onSignal = () => stopped.resolve();
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  await stopped.promise;
  logger.info("stopping");
  await server.shutdown();
  Deno.removeSignalListener("SIGINT", onSignal);
  Deno.removeSignalListener("SIGTERM", onSignal);
  logger.info("stopped");
  // Exit now: open gRPC sockets are closed by the kernel (no graceful GOAWAY, see
  // src/server/server.ts).
  Deno.exit(0);
}

/**
 * etcd driver: three `etcd` members (Debian's etcd-server) on loopback, each with its
 * own temp data dir, default settings (fsync on, heartbeat 100 ms, election 1000 ms).
 *
 * Locks use etcd's v3 lock service (`v3lockpb.Lock/Lock` and `Unlock`, what
 * `etcdctl lock` uses) over @grpc/grpc-js, with one lease per client granted and kept
 * alive by the npm `etcd3` client. Client `i` talks to member `i mod 3` first (etcd
 * forwards writes to the leader), and fails over to the others (pick-first).
 *
 * @module
 */
import { Etcd3, type Lease } from "etcd3";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { fileURLToPath } from "node:url";
import {
  commandExists,
  commandOutput,
  freePorts,
  pollUntil,
  removeWorkDir,
  spawnLogged,
  withTimeout,
} from "../process.ts";
import {
  type HeldLock,
  type LockSession,
  MemberProcesses,
  ProcessClusterDriver,
  type SystemDriver,
} from "./types.ts";

const etcdBinary = "etcd";
/** Lease TTL, the same as dlock's default session TTL. */
const leaseTtlSeconds = 10;

type LockResponse = { key: Uint8Array; header?: { revision?: string } };
type UnaryCall<Request, Response> = (
  request: Request,
  options: grpc.CallOptions,
  callback: (error: grpc.ServiceError | null, response?: Response) => void,
) => grpc.ClientUnaryCall;
type V3LockClient = grpc.Client & {
  Lock: UnaryCall<{ name: Uint8Array; lease: string }, LockResponse>;
  Unlock: UnaryCall<{ key: Uint8Array }, unknown>;
};
type V3LockClientConstructor = new (
  address: string,
  credentials: grpc.ChannelCredentials,
  options?: grpc.ClientOptions,
) => V3LockClient;

let v3LockConstructor: V3LockClientConstructor | null = null;

function loadV3LockClient(): V3LockClientConstructor {
  if (v3LockConstructor !== null) return v3LockConstructor;
  const definition = protoLoader.loadSync(
    fileURLToPath(new URL("./etcd_v3lock.proto", import.meta.url)),
    { longs: String, defaults: true },
  );
  const loaded = grpc.loadPackageDefinition(definition) as unknown as {
    v3lockpb: { Lock: V3LockClientConstructor };
  };
  v3LockConstructor = loaded.v3lockpb.Lock;
  return v3LockConstructor;
}

function unary<Request, Response>(
  call: UnaryCall<Request, Response>,
  client: V3LockClient,
  request: Request,
  timeoutMs: number,
): Promise<Response> {
  return new Promise((resolve, reject) => {
    call.call(client, request, { deadline: Date.now() + timeoutMs }, (error, response) => {
      if (error !== null) reject(error);
      else if (response === undefined) reject(new Error("etcd: empty response"));
      else resolve(response);
    });
  });
}

/** The etcd cluster and its lock sessions. */
export class EtcdDriver extends ProcessClusterDriver implements SystemDriver {
  readonly name = "etcd" as const;
  readonly memberCount = 3;
  readonly managed = true;
  #workDir: string | null = null;
  #clientPorts: number[] = [];
  #peerPorts: number[] = [];

  async unavailableReason(): Promise<string | null> {
    if (!(await commandExists(etcdBinary))) {
      return "etcd is not installed (run bench/install.sh: apt-get install etcd-server)";
    }
    return null;
  }

  async version(): Promise<string> {
    const output = await commandOutput(etcdBinary, ["--version"]);
    return output.split("\n")[0] ?? output;
  }

  async start(): Promise<void> {
    for (let attempt = 1; attempt <= 3; attempt++) {
      this.#workDir = await Deno.makeTempDir({ prefix: "dlock-bench-etcd-" });
      const ports = freePorts(2 * this.memberCount);
      this.#clientPorts = ports.slice(0, this.memberCount);
      this.#peerPorts = ports.slice(this.memberCount);
      this.members = new MemberProcesses(this.memberCount, (index) => this.#spawn(index));
      this.members.startAll();
      try {
        await this.waitHealthy(30_000);
        return;
      } catch (error) {
        await this.stop();
        if (attempt === 3) throw error;
      }
    }
  }

  #spawn(index: number) {
    const workDir = this.#workDir ?? "";
    const cluster = this.#peerPorts.map((port, i) => `m${i}=http://127.0.0.1:${port}`).join(",");
    const clientUrl = `http://127.0.0.1:${this.#clientPorts[index]}`;
    const peerUrl = `http://127.0.0.1:${this.#peerPorts[index]}`;
    return spawnLogged(`etcd m${index}`, etcdBinary, [
      "--name",
      `m${index}`,
      "--data-dir",
      `${workDir}/m${index}`,
      "--listen-client-urls",
      clientUrl,
      "--advertise-client-urls",
      clientUrl,
      "--listen-peer-urls",
      peerUrl,
      "--initial-advertise-peer-urls",
      peerUrl,
      "--initial-cluster",
      cluster,
      "--initial-cluster-state",
      "new",
      "--initial-cluster-token",
      "dlock-bench",
      "--logger",
      "zap",
      "--log-level",
      "warn",
    ], { logPath: `${workDir}/m${index}.log` });
  }

  async stop(): Promise<void> {
    await this.members?.killAll();
    this.members = null;
    if (this.#workDir !== null) {
      await removeWorkDir(this.#workDir);
      this.#workDir = null;
    }
  }

  /** Client URLs of the members, client `offset` first. */
  #hosts(offset: number): string[] {
    const hosts = this.#clientPorts.map((port) => `127.0.0.1:${port}`);
    const first = offset % hosts.length;
    return [...hosts.slice(first), ...hosts.slice(0, first)];
  }

  async connect(clientId: string): Promise<LockSession> {
    const offset = clientOffset(clientId);
    const hosts = this.#hosts(offset);
    const etcd = new Etcd3({
      hosts: hosts.map((host) => `http://${host}`),
      dialTimeout: 5_000,
    });
    const Client = loadV3LockClient();
    const lockClient = new Client(`ipv4:${hosts.join(",")}`, grpc.credentials.createInsecure(), {
      "grpc.service_config": JSON.stringify({ loadBalancingConfig: [{ pick_first: {} }] }),
      "grpc.initial_reconnect_backoff_ms": 50,
      "grpc.max_reconnect_backoff_ms": 500,
    });
    let lease: Lease | null = null;
    try {
      lease = etcd.lease(leaseTtlSeconds, { autoKeepAlive: true });
      lease.on("lost", () => {});
      const leaseId = await withTimeout(lease.grant(), 10_000, "etcd lease grant");
      return new EtcdSession(etcd, lease, lockClient, leaseId);
    } catch (error) {
      lockClient.close();
      etcd.close();
      throw error;
    }
  }

  async #memberStatus(index: number): Promise<{ memberId: string; leader: string } | null> {
    const response = await fetch(
      `http://127.0.0.1:${this.#clientPorts[index]}/v3/maintenance/status`,
      {
        method: "POST",
        body: "{}",
        signal: AbortSignal.timeout(1_000),
      },
    );
    if (!response.ok) {
      await response.body?.cancel();
      return null;
    }
    const body = await response.json() as { header?: { member_id?: string }; leader?: string };
    if (body.header?.member_id === undefined || body.leader === undefined) return null;
    if (body.leader === "0") return null;
    return { memberId: body.header.member_id, leader: body.leader };
  }

  leaderIndex(timeoutMs: number): Promise<number> {
    return pollUntil("an etcd leader", async () => {
      const statuses = await Promise.all(
        this.#clientPorts.map((_, index) =>
          this.members?.running(index) ? this.#memberStatus(index).catch(() => null) : null
        ),
      );
      const leaders = new Set(statuses.flatMap((status) => status === null ? [] : [status.leader]));
      if (leaders.size !== 1) return null;
      const [leader] = leaders;
      const index = statuses.findIndex((status) => status?.memberId === leader);
      return index >= 0 ? index : null;
    }, timeoutMs);
  }

  async waitHealthy(timeoutMs: number): Promise<void> {
    await this.members?.assertAllRunning();
    await pollUntil(
      "etcd health on every running member",
      async () => {
        for (let index = 0; index < this.memberCount; index++) {
          if (!this.members?.running(index)) continue;
          const response = await fetch(`http://127.0.0.1:${this.#clientPorts[index]}/health`, {
            signal: AbortSignal.timeout(1_000),
          });
          const body = await response.json() as { health?: string };
          if (body.health !== "true") return null;
        }
        return true;
      },
      timeoutMs,
      100,
    );
    await this.leaderIndex(timeoutMs);
  }
}

class EtcdSession implements LockSession {
  readonly #etcd: Etcd3;
  readonly #lease: Lease;
  readonly #lockClient: V3LockClient;
  readonly #leaseId: string;

  constructor(etcd: Etcd3, lease: Lease, lockClient: V3LockClient, leaseId: string) {
    this.#etcd = etcd;
    this.#lease = lease;
    this.#lockClient = lockClient;
    this.#leaseId = leaseId;
  }

  async acquire(name: string, timeoutMs: number): Promise<HeldLock> {
    const client = this.#lockClient;
    const response = await unary(client.Lock, client, {
      name: new TextEncoder().encode(`bench/${name}`),
      lease: this.#leaseId,
    }, timeoutMs);
    const key = response.key;
    return {
      token: response.header?.revision ?? "",
      release: async () => {
        await unary(client.Unlock, client, { key }, 10_000);
      },
    };
  }

  async close(): Promise<void> {
    await withTimeout(this.#lease.revoke(), 5_000, "etcd lease revoke").catch(() => {});
    this.#lockClient.close();
    this.#etcd.close();
  }
}

/**
 * Which member a client talks to first: its trailing number (client ids end in their
 * index), else a stable hash, so clients spread evenly over the members.
 */
export function clientOffset(clientId: string): number {
  const match = /(\d+)$/.exec(clientId);
  if (match?.[1] !== undefined) return Number(match[1]);
  let hash = 0;
  for (let i = 0; i < clientId.length; i++) hash = (hash * 31 + clientId.charCodeAt(i)) >>> 0;
  return hash;
}

/**
 * dlock driver: three `dlock server` processes (this repository, default settings,
 * fsync on) on loopback with temp data dirs, or an existing cluster given with
 * `--servers` (then nothing is started, killed or measured for memory).
 *
 * Sessions use the client library (src/client/mod.ts): one session per client, all
 * operations multiplexed on its stream, following the leader.
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { freeServerPorts } from "../../src/transport/tcp.ts";
import { pollUntil, removeWorkDir, spawnLogged, withTimeout } from "../process.ts";
import {
  type HeldLock,
  type LockSession,
  MemberProcesses,
  ProcessClusterDriver,
  type SystemDriver,
} from "./types.ts";

type ClientModule = typeof import("../../src/client/mod.ts");
type DlockClient = Awaited<ReturnType<ClientModule["connect"]>>;

let clientModule: ClientModule | null = null;

/** Loads the client library lazily, so etcd and ZooKeeper runs do not depend on it. */
async function loadClient(): Promise<ClientModule> {
  clientModule ??= await import("../../src/client/mod.ts");
  return clientModule;
}

const repositoryRoot = fileURLToPath(new URL("../../", import.meta.url));

/** The dlock cluster (started here, or external) and its lock sessions. */
export class DlockDriver extends ProcessClusterDriver implements SystemDriver {
  readonly name = "dlock" as const;
  readonly memberCount: number;
  readonly managed: boolean;
  #addresses: string[];
  #workDir: string | null = null;

  readonly #cpuProfileDir: string | null;
  readonly #extraServerArgs: string[];

  /**
   * `servers`: an existing cluster's addresses; absent: start one of three members.
   * `cpuProfileDir`: run the servers with `--cpu-prof` into that directory and stop them
   * with SIGTERM, so V8 writes the profiles (`deno run --cpu-prof`). `extraServerArgs`
   * are appended to each server's command line (for experiments; the benchmark itself
   * uses the defaults).
   */
  constructor(
    servers?: readonly string[],
    cpuProfileDir: string | null = null,
    extraServerArgs: readonly string[] = [],
  ) {
    super();
    this.#cpuProfileDir = cpuProfileDir;
    this.#extraServerArgs = [...extraServerArgs];
    this.managed = servers === undefined;
    this.#addresses = servers === undefined ? [] : [...servers];
    this.memberCount = servers?.length ?? 3;
  }

  /** The members' client addresses (known after `start`, or as given). */
  get addresses(): readonly string[] {
    return this.#addresses;
  }

  async unavailableReason(): Promise<string | null> {
    const main = `${repositoryRoot}src/main.ts`;
    const client = `${repositoryRoot}src/client/mod.ts`;
    for (const path of [main, client]) {
      if (!(await Deno.stat(path).then(() => true, () => false))) {
        return `dlock is not built yet (${path} is missing)`;
      }
    }
    if (
      this.managed &&
      !(await Deno.stat(`${repositoryRoot}src/cli/server.ts`).then(() => true, () => false))
    ) {
      return "dlock server is not built yet (src/cli/server.ts is missing)";
    }
    return null;
  }

  version(): Promise<string> {
    return Promise.resolve(`dlock 0.1.0 (this tree) on deno ${Deno.version.deno}`);
  }

  async start(): Promise<void> {
    if (!this.managed) {
      await this.waitHealthy(30_000);
      return;
    }
    for (let attempt = 1; attempt <= 3; attempt++) {
      const workDir = await Deno.makeTempDir({ prefix: "dlock-bench-dlock-" });
      this.#workDir = workDir;
      const ports = freeServerPorts(this.memberCount + 1);
      this.#addresses = ports.slice(0, this.memberCount).map((port) => `127.0.0.1:${port}`);
      // No filewriter runs: the lock path never touches it (only appends do).
      const filewriter = `127.0.0.1:${ports[this.memberCount]}`;
      this.members = new MemberProcesses(this.memberCount, (index) => {
        const self = this.#addresses[index] ?? "";
        const peers = this.#addresses.filter((_, i) => i !== index);
        const profile = this.#cpuProfileDir === null
          ? []
          : ["--cpu-prof", `--cpu-prof-dir=${this.#cpuProfileDir}`];
        return spawnLogged(`dlock m${index}`, Deno.execPath(), [
          "run",
          "-A",
          ...profile,
          "--config",
          `${repositoryRoot}deno.json`,
          `${repositoryRoot}src/main.ts`,
          "server",
          self,
          ...peers,
          filewriter,
          "--data-dir",
          `${workDir}/m${index}`,
          ...this.#extraServerArgs,
        ], { logPath: `${workDir}/m${index}.log`, cwd: workDir });
      });
      this.members.startAll();
      try {
        await this.waitHealthy(60_000);
        return;
      } catch (error) {
        const logPath = this.members.logPath(0);
        const log = logPath === null ? "" : await Deno.readTextFile(logPath).catch(() => "");
        await this.stop();
        if (attempt === 3) {
          throw new Error(`dlock cluster did not start; member 0 log tail:\n${log.slice(-2_000)}`, {
            cause: error,
          });
        }
      }
    }
  }

  async stop(): Promise<void> {
    if (this.#cpuProfileDir !== null) await this.members?.terminateAll(15_000);
    await this.members?.killAll();
    this.members = null;
    if (this.#workDir !== null) {
      await removeWorkDir(this.#workDir);
      this.#workDir = null;
    }
  }

  async connect(clientId: string): Promise<LockSession> {
    const { connect } = await loadClient();
    const client = await connect(this.#addresses, { name: clientId, ttlMs: 10_000 });
    return new DlockSession(client);
  }

  #running(index: number): boolean {
    return this.members === null ? !this.managed : this.members.running(index);
  }

  async #statuses(): Promise<({ self: string; role: string; leader: string } | null)[]> {
    const { fetchStatus } = await loadClient();
    return await Promise.all(
      this.#addresses.map((address, index) =>
        this.#running(index)
          ? fetchStatus([address], { timeoutMs: 1_000, locksLimit: 0 }).catch(() => null)
          : null
      ),
    );
  }

  leaderIndex(timeoutMs: number): Promise<number> {
    return pollUntil(
      "a dlock leader",
      async () => {
        const statuses = await this.#statuses();
        const leader = statuses.find((status) => status?.role.toLowerCase() === "leader");
        if (leader === undefined || leader === null) return null;
        const index = this.#addresses.indexOf(leader.self);
        return index >= 0 ? index : null;
      },
      timeoutMs,
      50,
    );
  }

  async waitHealthy(timeoutMs: number): Promise<void> {
    await this.members?.assertAllRunning();
    await pollUntil(
      "dlock status on every running member",
      async () => {
        const statuses = await this.#statuses();
        for (let index = 0; index < this.memberCount; index++) {
          if (this.#running(index) && (statuses[index] ?? null) === null) return null;
        }
        return true;
      },
      timeoutMs,
      100,
    );
    await this.leaderIndex(timeoutMs);
  }
}

class DlockSession implements LockSession {
  readonly #client: DlockClient;

  constructor(client: DlockClient) {
    this.#client = client;
  }

  async acquire(name: string, timeoutMs: number): Promise<HeldLock> {
    const handle = await this.#client.acquire(name, { timeoutMs });
    return { token: String(handle.token), release: () => handle.release() };
  }

  async close(): Promise<void> {
    await withTimeout(this.#client.close(), 5_000, "dlock close").catch(() => {});
  }
}

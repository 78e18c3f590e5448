/**
 * ZooKeeper driver: a three-server ensemble (Debian's zookeeper 3.8) on loopback with
 * generated configs and temp data dirs. Settings are the sample config's (tickTime
 * 2000, initLimit 10, syncLimit 5, forceSync on) and upstream zkServer.sh's heap
 * (-Xmx1000m); the admin HTTP server is off so it does not take port 8080.
 *
 * Locks use the standard recipe through npm `node-zookeeper-client`: create
 * `<lock>/lock-` EPHEMERAL_SEQUENTIAL, list the children, hold when ours is the lowest,
 * else watch the next lower one and look again when it goes. Node names carry a
 * per-session GUID (Curator's "protected" mode), so a create whose reply was lost in a
 * failover is found again instead of leaving an orphan that would block the lock.
 *
 * @module
 */
import zookeeperModule from "node-zookeeper-client";
import {
  commandExists,
  commandOutput,
  freePorts,
  pollUntil,
  removeWorkDir,
  sleep,
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

const javaBinary = "java";
const zookeeperJar = "/usr/share/java/zookeeper.jar";
const sessionTimeoutMs = 10_000;
const lockRoot = "/bench-locks";

// --- The library boundary: node-zookeeper-client has no types; narrowed here once. ---
type ZkError = Error & { code?: number; getCode?: () => number };
type Callback<T> = (error: ZkError | null, result: T) => void;
type ZkEvent = { getType(): number; getPath(): string };
type ZkClient = {
  connect(): void;
  close(): void;
  once(event: "connected" | "expired" | "disconnected", listener: () => void): void;
  on(event: "state", listener: (state: unknown) => void): void;
  create(path: string, data: Uint8Array | null, mode: number, callback: Callback<string>): void;
  getChildren(path: string, callback: Callback<string[]>): void;
  exists(path: string, watcher: (event: ZkEvent) => void, callback: Callback<unknown>): void;
  remove(path: string, version: number, callback: (error: ZkError | null) => void): void;
  mkdirp(path: string, callback: Callback<string>): void;
};
type ZkModule = {
  createClient(
    connectionString: string,
    options: { sessionTimeout: number; spinDelay: number; retries: number },
  ): ZkClient;
  CreateMode: { PERSISTENT: number; EPHEMERAL_SEQUENTIAL: number };
  Exception: { NODE_EXISTS: number; NO_NODE: number; CONNECTION_LOSS: number };
};
const zookeeper = zookeeperModule as unknown as ZkModule;

function errorCode(error: ZkError): number | undefined {
  return typeof error.getCode === "function" ? error.getCode() : error.code;
}

function call<T>(start: (callback: Callback<T>) => void): Promise<T> {
  return new Promise((resolve, reject) => {
    start((error, result) => error === null ? resolve(result) : reject(error));
  });
}

/** Sends a four-letter command to a ZooKeeper client port and returns the reply. */
async function fourLetterWord(port: number, word: string): Promise<string> {
  const connection = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await connection.write(new TextEncoder().encode(word));
    const chunks: Uint8Array[] = [];
    const buffer = new Uint8Array(4096);
    for (let i = 0; i < 64; i++) {
      const read = await connection.read(buffer);
      if (read === null) break;
      chunks.push(buffer.slice(0, read));
    }
    return new TextDecoder().decode(new Uint8Array(chunks.flatMap((chunk) => [...chunk])));
  } finally {
    try {
      connection.close();
    } catch {
      // Closed by the server already.
    }
  }
}

/** The ZooKeeper ensemble and its lock sessions. */
export class ZookeeperDriver extends ProcessClusterDriver implements SystemDriver {
  readonly name = "zookeeper" as const;
  readonly memberCount = 3;
  readonly managed = true;
  #workDir: string | null = null;
  #clientPorts: number[] = [];

  async unavailableReason(): Promise<string | null> {
    if (!(await commandExists(zookeeperJar))) {
      return "zookeeper is not installed (run bench/install.sh: apt-get install zookeeper)";
    }
    if (!(await commandExists(javaBinary))) return "java is not installed (needed by zookeeper)";
    return null;
  }

  async version(): Promise<string> {
    const output = await commandOutput("dpkg-query", ["-W", "-f", "${Version}", "zookeeper"]);
    return `zookeeper ${output} (Debian)`;
  }

  async start(): Promise<void> {
    for (let attempt = 1; attempt <= 3; attempt++) {
      const workDir = await Deno.makeTempDir({ prefix: "dlock-bench-zookeeper-" });
      this.#workDir = workDir;
      const ports = freePorts(3 * this.memberCount);
      this.#clientPorts = ports.slice(0, this.memberCount);
      const servers = Array.from(
        { length: this.memberCount },
        (_, i) => `server.${i + 1}=127.0.0.1:${ports[3 + i]}:${ports[6 + i]}`,
      );
      for (let index = 0; index < this.memberCount; index++) {
        const dataDir = `${workDir}/m${index}`;
        await Deno.mkdir(dataDir, { recursive: true });
        await Deno.writeTextFile(`${dataDir}/myid`, `${index + 1}\n`);
        await Deno.writeTextFile(
          `${workDir}/m${index}.cfg`,
          [
            "tickTime=2000",
            "initLimit=10",
            "syncLimit=5",
            `dataDir=${dataDir}`,
            `clientPort=${this.#clientPorts[index]}`,
            "clientPortAddress=127.0.0.1",
            "admin.enableServer=false",
            "4lw.commands.whitelist=srvr,ruok,mntr",
            "maxClientCnxns=0",
            ...servers,
            "",
          ].join("\n"),
        );
      }
      this.members = new MemberProcesses(
        this.memberCount,
        (index) =>
          spawnLogged(`zookeeper m${index}`, javaBinary, [
            "-Xmx1000m",
            "-cp",
            `/etc/zookeeper/conf:${zookeeperJar}`,
            "org.apache.zookeeper.server.quorum.QuorumPeerMain",
            `${workDir}/m${index}.cfg`,
          ], { logPath: `${workDir}/m${index}.log` }),
      );
      this.members.startAll();
      try {
        await this.waitHealthy(60_000);
        return;
      } catch (error) {
        await this.stop();
        if (attempt === 3) throw error;
      }
    }
  }

  async stop(): Promise<void> {
    await this.members?.killAll();
    this.members = null;
    if (this.#workDir !== null) {
      await removeWorkDir(this.#workDir);
      this.#workDir = null;
    }
  }

  async connect(clientId: string): Promise<LockSession> {
    const connectString = this.#clientPorts.map((port) => `127.0.0.1:${port}`).join(",");
    const client = zookeeper.createClient(connectString, {
      sessionTimeout: sessionTimeoutMs,
      spinDelay: 50,
      retries: 0,
    });
    const connected = new Promise<void>((resolve) => client.once("connected", resolve));
    client.connect();
    try {
      await withTimeout(connected, 15_000, `zookeeper connect of ${clientId}`);
      return new ZookeeperSession(client);
    } catch (error) {
      client.close();
      throw error;
    }
  }

  async #mode(index: number): Promise<string | null> {
    const port = this.#clientPorts[index];
    if (port === undefined) return null;
    const reply = await fourLetterWord(port, "srvr");
    return /^Mode: (\w+)/m.exec(reply)?.[1] ?? null;
  }

  leaderIndex(timeoutMs: number): Promise<number> {
    return pollUntil(
      "a zookeeper leader",
      async () => {
        for (let index = 0; index < this.memberCount; index++) {
          if (!this.members?.running(index)) continue;
          if (await this.#mode(index).catch(() => null) === "leader") return index;
        }
        return null;
      },
      timeoutMs,
      100,
    );
  }

  async waitHealthy(timeoutMs: number): Promise<void> {
    await this.members?.assertAllRunning();
    await pollUntil(
      "zookeeper serving on every running member",
      async () => {
        for (let index = 0; index < this.memberCount; index++) {
          if (!this.members?.running(index)) continue;
          const mode = await this.#mode(index);
          if (mode !== "leader" && mode !== "follower") return null;
        }
        return true;
      },
      timeoutMs,
      100,
    );
    await this.leaderIndex(timeoutMs);
  }
}

class ZookeeperSession implements LockSession {
  readonly #client: ZkClient;
  readonly #guid = crypto.randomUUID();
  readonly #parents = new Set<string>();

  constructor(client: ZkClient) {
    this.#client = client;
  }

  /**
   * Creates the lock's parent node once per session (persistent, as in the recipe): the
   * root with mkdirp the first time, then one create per new lock name.
   */
  async #ensureParent(parent: string): Promise<void> {
    if (this.#parents.has(parent)) return;
    if (!this.#parents.has(lockRoot)) {
      await call<string>((callback) => this.#client.mkdirp(lockRoot, callback));
      this.#parents.add(lockRoot);
    }
    try {
      await call<string>((callback) =>
        this.#client.create(parent, null, zookeeper.CreateMode.PERSISTENT, callback)
      );
    } catch (error) {
      if (errorCode(error as ZkError) !== zookeeper.Exception.NODE_EXISTS) throw error;
    }
    this.#parents.add(parent);
  }

  /** Creates our sequential node, finding it again if the reply was lost. */
  async #createNode(parent: string): Promise<string> {
    const prefix = `_c_${this.#guid}-lock-`;
    try {
      return await call<string>((callback) =>
        this.#client.create(
          `${parent}/${prefix}`,
          null,
          zookeeper.CreateMode.EPHEMERAL_SEQUENTIAL,
          callback,
        )
      );
    } catch (error) {
      if (errorCode(error as ZkError) !== zookeeper.Exception.CONNECTION_LOSS) throw error;
      // The create may have happened: look for our GUID among the children.
      for (let attempt = 0; attempt < 100; attempt++) {
        try {
          const children = await call<string[]>((callback) =>
            this.#client.getChildren(parent, callback)
          );
          const ours = children.find((child) => child.startsWith(prefix));
          if (ours !== undefined) return `${parent}/${ours}`;
          return await this.#createNode(parent);
        } catch (retryError) {
          if (errorCode(retryError as ZkError) !== zookeeper.Exception.CONNECTION_LOSS) {
            throw retryError;
          }
          await sleep(50);
        }
      }
      throw error;
    }
  }

  async acquire(name: string, timeoutMs: number): Promise<HeldLock> {
    const deadline = performance.now() + timeoutMs;
    const parent = `${lockRoot}/${name}`;
    await this.#ensureParent(parent);
    const node = await this.#createNode(parent);
    const ownName = node.slice(parent.length + 1);
    try {
      for (;;) {
        const children = await call<string[]>((callback) =>
          this.#client.getChildren(parent, callback)
        );
        const sorted = children.sort((a, b) => sequenceOf(a) - sequenceOf(b));
        const position = sorted.indexOf(ownName);
        if (position < 0) throw new Error(`zookeeper: lock node ${node} vanished (session lost?)`);
        if (position === 0) {
          return { token: String(sequenceOf(ownName)), release: () => this.#remove(node) };
        }
        const predecessor = `${parent}/${sorted[position - 1]}`;
        let onDeleted: () => void = () => {};
        const deleted = new Promise<void>((resolve) => onDeleted = resolve);
        const stat = await call<unknown>((callback) =>
          this.#client.exists(predecessor, () => onDeleted(), callback)
        );
        if (stat === null || stat === undefined) continue;
        const remainingMs = deadline - performance.now();
        if (remainingMs <= 0) throw new Error(`zookeeper: acquire of ${name} timed out`);
        await withTimeout(deleted, remainingMs, `zookeeper acquire of ${name}`);
      }
    } catch (error) {
      await this.#remove(node).catch(() => {});
      throw error;
    }
  }

  /** Deletes our node; retries through connection loss for up to 10 s. */
  async #remove(node: string): Promise<void> {
    const deadline = performance.now() + 10_000;
    for (;;) {
      try {
        await call<void>((callback) =>
          this.#client.remove(node, -1, (error) => callback(error, undefined))
        );
        return;
      } catch (error) {
        const code = errorCode(error as ZkError);
        if (code === zookeeper.Exception.NO_NODE) return;
        if (code !== zookeeper.Exception.CONNECTION_LOSS || performance.now() > deadline) {
          throw error;
        }
        await sleep(50);
      }
    }
  }

  close(): Promise<void> {
    this.#client.close();
    return Promise.resolve();
  }
}

/** The sequence number ZooKeeper appended to a sequential node name. */
function sequenceOf(child: string): number {
  return Number(child.slice(-10));
}

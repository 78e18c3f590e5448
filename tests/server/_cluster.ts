/**
 * Starts real `dlock server` processes for tests (loopback, free ports, temp data
 * dirs) and waits for a leader through Status. Every process is killed by
 * {@link TestCluster.stop}; callers do that in `finally`.
 *
 * @module
 */
import { freeServerPorts } from "../../src/transport/tcp.ts";
import { CallError, LockTestClient } from "./_lock_client.ts";

const mainModule = new URL("../../src/main.ts", import.meta.url).pathname;

/** One server process. */
export interface ServerProcess {
  readonly address: string;
  readonly dataDir: string;
  child: Deno.ChildProcess | null;
  log: string[];
  /** Resolves when the process's stdout and stderr are read to their end. */
  logRead: Promise<void>;
}

/** Sleeps. */
export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A cluster of server processes started with the original command line. */
export class TestCluster {
  readonly servers: ServerProcess[];
  readonly clients = new Map<string, LockTestClient>();
  readonly filewriter: string;

  private constructor(readonly root: string, addresses: string[], filewriter: string) {
    this.filewriter = filewriter;
    this.servers = addresses.map((address) => ({
      address,
      dataDir: `${root}/${address.replace(":", "_")}`,
      child: null,
      log: [],
      logRead: Promise.resolve(),
    }));
  }

  /** Creates (does not start) a cluster of `size` servers on free ports. */
  static async create(size = 3, filewriter?: string): Promise<TestCluster> {
    const root = await Deno.makeTempDir({ prefix: "dlock-server-test-" });
    const ports = freeServerPorts(size + 1);
    const addresses = ports.slice(0, size).map((port) => `127.0.0.1:${port}`);
    return new TestCluster(root, addresses, filewriter ?? `127.0.0.1:${ports[size]}`);
  }

  /** Starts server `index` (again) on its data dir, with the original positional form. */
  start(index: number, extraArgs: string[] = []): ServerProcess {
    const server = this.servers[index];
    if (server === undefined) throw new Error(`no server ${index}`);
    const peers = this.servers.filter((other) => other !== server).map((other) => other.address);
    const command = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        mainModule,
        "server",
        server.address,
        ...peers,
        this.filewriter,
        "--data-dir",
        server.dataDir,
        ...extraArgs,
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    });
    const child = command.spawn();
    server.child = child;
    server.log = [];
    server.logRead = Promise.all([
      collect(child.stdout, server.log),
      collect(child.stderr, server.log),
    ]).then(() => {});
    return server;
  }

  /** Starts every server. */
  startAll(): void {
    for (let index = 0; index < this.servers.length; index++) this.start(index);
  }

  /** A cached unary client for `address`. */
  client(address: string): LockTestClient {
    let client = this.clients.get(address);
    if (client === undefined) {
      client = new LockTestClient(address);
      this.clients.set(address, client);
    }
    return client;
  }

  /**
   * Polls Status on the running servers until all of them agree on one leader that
   * reports itself as leader; returns its address.
   * @throws when no agreement within `timeoutMs`.
   */
  async waitForLeader(timeoutMs = 15_000, among?: number[]): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    const indexes = among ?? this.servers.map((_, index) => index);
    let last = "";
    while (Date.now() < deadline) {
      const views: { self: string; role: string; leader: string }[] = [];
      for (const index of indexes) {
        const server = this.servers[index];
        if (server?.child === null || server === undefined) continue;
        try {
          const status = await this.client(server.address).call("Status", {}, 1_000);
          views.push({ self: status.self, role: status.role, leader: status.leader });
        } catch (error) {
          last = String(error);
        }
      }
      const leaders = views.filter((view) => view.role === "leader");
      if (
        views.length === indexes.length && leaders.length === 1 &&
        views.every((view) => view.leader === leaders[0]?.self)
      ) {
        return leaders[0]?.self as string;
      }
      last = JSON.stringify(views);
      await delay(50);
    }
    throw new Error(`no agreed leader within ${timeoutMs} ms: ${last}\n${this.logs()}`);
  }

  /** Index of the server with `address`. */
  indexOf(address: string): number {
    return this.servers.findIndex((server) => server.address === address);
  }

  /**
   * Waits for server `index` to exit on its own; returns its status once its whole output
   * is in its log (the exit can come before the last lines are read).
   */
  async exited(index: number): Promise<Deno.CommandStatus> {
    const server = this.servers[index];
    const child = server?.child;
    if (server === undefined || child === null || child === undefined) {
      throw new Error(`server ${index} is not running`);
    }
    const status = await child.status;
    await server.logRead;
    server.child = null;
    return status;
  }

  /** Sends `signal` to server `index` and waits for it to exit; returns its status. */
  async kill(index: number, signal: Deno.Signal = "SIGKILL"): Promise<Deno.CommandStatus> {
    const server = this.servers[index];
    const child = server?.child;
    if (server === undefined || child === null || child === undefined) {
      throw new Error(`server ${index} is not running`);
    }
    child.kill(signal);
    const status = await child.status;
    server.child = null;
    // Closed only after the exit, so that these tests never depend on the member port
    // dropping the client's GOAWAY (denoland/deno#36788; tests/server/grpc_close_test.ts
    // tests that on its own).
    this.clients.get(server.address)?.close();
    this.clients.delete(server.address);
    return status;
  }

  /** Everything the servers logged (for failure messages). */
  logs(): string {
    return this.servers.map((server) =>
      `--- ${server.address}\n${server.log.join("").slice(-4000)}`
    ).join("\n");
  }

  /**
   * Kills every process, then closes the gRPC clients (in that order, so that no live
   * server processes a client's GOAWAY: denoland/deno#36788), and removes the data.
   */
  async stop(): Promise<void> {
    for (let index = 0; index < this.servers.length; index++) {
      if (this.servers[index]?.child) await this.kill(index).catch(() => {});
    }
    for (const client of this.clients.values()) client.close();
    this.clients.clear();
    await Deno.remove(this.root, { recursive: true }).catch(() => {});
  }
}

/** Appends the decoded `stream` to `into`; resolves at its end. */
async function collect(stream: ReadableStream<Uint8Array>, into: string[]): Promise<void> {
  const decoder = new TextDecoder();
  try {
    for await (const chunk of stream) into.push(decoder.decode(chunk, { stream: true }));
  } catch {
    // The process is gone.
  }
}

/** Calls and expects a failure with `reason`; returns the error. */
export async function expectReason(promise: Promise<unknown>, reason: string): Promise<CallError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof CallError && error.reason === reason) return error;
    throw new Error(`expected ${reason}, got ${String(error)}`);
  }
  throw new Error(`expected ${reason}, but the call succeeded`);
}

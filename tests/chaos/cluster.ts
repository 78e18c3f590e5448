/**
 * The cluster under test: N real `dlock server` processes and one `dlock filewriter`,
 * either each server in its own network namespace (so partitions can be injected) or all
 * on loopback (process-level faults only).
 *
 * @module
 */
import { NetworkLab } from "./netns.ts";
import { freeServerPorts } from "../../src/transport/tcp.ts";
import { freePort, ManagedProcess, tailOfFile } from "./processes.ts";
import { StatusProbe } from "./status.ts";

const mainPath = new URL("../../src/main.ts", import.meta.url).pathname;
const serverPort = 5_000;

/** How the cluster was laid out. */
export type ClusterOptions = {
  servers: number;
  directory: string;
  sessionTtlMs: number;
  /** Network namespaces when given, loopback otherwise. */
  lab: NetworkLab | null;
  /** Called with the pid of every process start (crash cleanup records it). */
  recordProcess: (pid: number) => void;
};

/** The running cluster. */
export class Cluster {
  readonly servers: ManagedProcess[];
  readonly filewriter: ManagedProcess;
  readonly serverAddresses: readonly string[];
  readonly filewriterAddress: string;
  readonly lab: NetworkLab | null;
  readonly probe = new StatusProbe();
  readonly #recordProcess: (pid: number) => void;

  private constructor(
    servers: ManagedProcess[],
    filewriter: ManagedProcess,
    serverAddresses: string[],
    filewriterAddress: string,
    lab: NetworkLab | null,
    recordProcess: (pid: number) => void,
  ) {
    this.#recordProcess = recordProcess;
    this.servers = servers;
    this.filewriter = filewriter;
    this.serverAddresses = serverAddresses;
    this.filewriterAddress = filewriterAddress;
    this.lab = lab;
  }

  /** Lays out the processes (not started yet). */
  static async create(options: ClusterOptions): Promise<Cluster> {
    const { lab, directory } = options;
    const host = lab?.hostAddress ?? "127.0.0.1";
    // On loopback the filewriter's port must not be a server's peer port either.
    const ports = lab === null ? freeServerPorts(options.servers + 1) : [];
    const filewriterAddress = lab !== null
      ? `${host}:${freePort(host)}`
      : `127.0.0.1:${ports[options.servers]}`;
    const serverAddresses = lab !== null
      ? lab.serverAddresses.map((a) => `${a}:${serverPort}`)
      : ports.slice(0, options.servers).map((port) => `127.0.0.1:${port}`);
    await Deno.mkdir(`${directory}/files`, { recursive: true });
    const filewriter = new ManagedProcess(
      "filewriter",
      [
        Deno.execPath(),
        "run",
        "-A",
        mainPath,
        "filewriter",
        "--listen",
        filewriterAddress,
        "--backend",
        `file:${directory}/files`,
      ],
      `${directory}/filewriter.log`,
    );
    const ttlSeconds = Math.max(1, Math.round(options.sessionTtlMs / 1000));
    const servers = serverAddresses.map((self, index) => {
      const peers = serverAddresses.filter((a) => a !== self);
      const command = [
        Deno.execPath(),
        "run",
        "-A",
        mainPath,
        "server",
        self,
        ...peers,
        filewriterAddress,
        "--data-dir",
        `${directory}/data-${index}`,
        "--session-ttl",
        `${ttlSeconds}`,
      ];
      return new ManagedProcess(
        `server-${index}`,
        lab !== null ? lab.wrap(index, command) : command,
        `${directory}/server-${index}.log`,
      );
    });
    return new Cluster(
      servers,
      filewriter,
      serverAddresses,
      filewriterAddress,
      lab,
      options.recordProcess,
    );
  }

  /**
   * Starts everything and waits (up to `timeoutMs`) for a leader. A process that crashes
   * is restarted after a second, as a service manager would (the crash is still reported).
   */
  async start(timeoutMs: number, signal?: AbortSignal): Promise<string> {
    for (const process of [this.filewriter, ...this.servers]) {
      process.restartAfterCrashMs = 1_000;
      process.onStart = this.#recordProcess;
      process.start();
    }
    return await this.waitForLeader(timeoutMs, signal);
  }

  /**
   * Waits for a server to claim leadership.
   * @throws {Error} with the servers' log tails when none does in time.
   */
  async waitForLeader(timeoutMs: number, signal?: AbortSignal): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      signal?.throwIfAborted();
      const leader = await this.probe.leader(this.serverAddresses, 500);
      if (leader !== null) return leader;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    const tails = await Promise.all(
      this.servers.map(async (s) => `--- ${s.name}\n${await tailOfFile(s.logPath, 10)}`),
    );
    throw new Error(
      `Cannot start the cluster as no leader was elected within ${timeoutMs} ms\n${
        tails.join("\n")
      }`,
    );
  }

  /** Index of the current leader, or null when none is known. */
  async leaderIndex(): Promise<number | null> {
    const leader = await this.probe.leader(this.serverAddresses, 500);
    if (leader === null) return null;
    const index = this.serverAddresses.indexOf(leader);
    return index < 0 ? null : index;
  }

  /** Restarts what is down, resumes what is paused, heals the network. */
  async healAll(): Promise<void> {
    await this.lab?.heal();
    for (const process of [this.filewriter, ...this.servers]) {
      if (process.paused) process.resume();
      if (!process.running) process.start();
    }
  }

  /** Stops every process (SIGTERM, then SIGKILL after `graceMs`). */
  async stopAll(graceMs: number): Promise<void> {
    this.#unsupervise();
    await this.probe.close();
    await Promise.all(this.servers.map((s) => s.stop(graceMs)));
    await this.filewriter.stop(graceMs);
  }

  #unsupervise(): void {
    for (const process of [this.filewriter, ...this.servers]) process.restartAfterCrashMs = null;
  }

  /** Kills every process at once (cleanup on errors). */
  async killAll(): Promise<void> {
    this.#unsupervise();
    await Promise.all([...this.servers, this.filewriter].map((p) => p.kill()));
    await this.probe.close();
  }
}

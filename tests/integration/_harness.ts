/**
 * Real-process harness for the integration tests: lock servers and a filewriter
 * started as `deno run -A src/main.ts ...` on free loopback ports with temp data
 * directories, logs captured to files, and helpers to kill (-9), pause and restart
 * them. Every wait is bounded; `stop()` kills everything (call it in `finally`).
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { fetchStatus, type StatusResponse } from "../../src/client/mod.ts";
import { freeServerPorts } from "../../src/transport/tcp.ts";

const repository = fileURLToPath(new URL("../../", import.meta.url));

/** `deno run` of src/main.ts with the repository's config. */
export function dlockCommand(): string[] {
  return [
    Deno.execPath(),
    "run",
    "-A",
    "--quiet",
    "--config",
    `${repository}deno.json`,
    `${repository}src/main.ts`,
  ];
}

/** `deno run` of a script in this folder. */
export function scriptCommand(script: string): string[] {
  return [
    Deno.execPath(),
    "run",
    "-A",
    "--quiet",
    "--config",
    `${repository}deno.json`,
    fileURLToPath(new URL(script, import.meta.url)),
  ];
}

/** A child process whose stdout and stderr go to a log file. */
export class LoggedProcess {
  readonly child: Deno.ChildProcess;
  readonly logPath: string;
  #exited = false;
  readonly exited: Promise<Deno.CommandStatus>;

  constructor(command: string[], logPath: string, options: { stdin?: "piped" | "null" } = {}) {
    const [program, ...args] = command as [string, ...string[]];
    this.logPath = logPath;
    this.child = new Deno.Command(program, {
      args,
      stdin: options.stdin ?? "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const file = Deno.openSync(logPath, { create: true, append: true });
    const drain = async (stream: ReadableStream<Uint8Array>) => {
      for await (const chunk of stream) {
        let written = 0;
        while (written < chunk.length) written += file.writeSync(chunk.subarray(written));
      }
    };
    const drained = Promise.all([drain(this.child.stdout), drain(this.child.stderr)])
      .finally(() => file.close());
    this.exited = this.child.status.then(async (status) => {
      this.#exited = true;
      await drained.catch(() => {});
      return status;
    });
  }

  /** True once the process exited. */
  get hasExited(): boolean {
    return this.#exited;
  }

  /** Sends `signal` unless the process already exited. */
  signal(signal: Deno.Signal): void {
    if (this.#exited) return;
    try {
      this.child.kill(signal);
    } catch {
      // Exited meanwhile.
    }
  }

  /** SIGKILL and wait (bounded) for the exit. */
  async kill(): Promise<void> {
    this.signal("SIGCONT");
    this.signal("SIGKILL");
    await withTimeout(this.exited, 10_000, `exit of ${this.logPath}`);
  }

  /** The log so far. */
  async log(): Promise<string> {
    try {
      return await Deno.readTextFile(this.logPath);
    } catch {
      return "";
    }
  }
}

/** Options of {@link startCluster}. */
export type ClusterOptions = {
  /** Servers (default 3). */
  servers?: number;
  /** Raft election timeout base (default 150 ms, to keep failover tests short). */
  electionMs?: number;
  /** Raft heartbeat (default 30 ms). */
  heartbeatMs?: number;
};

/** A running test cluster: N lock servers and a filewriter. */
export class TestCluster {
  readonly dir: string;
  readonly addresses: string[];
  readonly filewriterAddress: string;
  readonly servers: (LoggedProcess | null)[];
  filewriter: LoggedProcess | null = null;
  readonly #options: Required<ClusterOptions>;
  #logCounter = 0;

  constructor(dir: string, ports: number[], options: Required<ClusterOptions>) {
    this.dir = dir;
    this.addresses = ports.slice(0, options.servers).map((port) => `127.0.0.1:${port}`);
    this.filewriterAddress = `127.0.0.1:${ports[options.servers]}`;
    this.servers = this.addresses.map(() => null);
    this.#options = options;
  }

  /** The original command line of server `index`: SELF PEER... FILEWRITER, plus test flags. */
  serverCommand(index: number): string[] {
    const self = this.addresses[index] as string;
    return [
      ...dlockCommand(),
      "server",
      self,
      ...this.addresses.filter((address) => address !== self),
      this.filewriterAddress,
      "--data-dir",
      `${this.dir}/data-${index}`,
      "--election-ms",
      String(this.#options.electionMs),
      "--heartbeat-ms",
      String(this.#options.heartbeatMs),
    ];
  }

  /** Starts (or restarts) server `index` on its data directory. */
  startServer(index: number): void {
    const running = this.servers[index];
    if (running !== null && running !== undefined && !running.hasExited) {
      throw new Error(`server ${index} is already running`);
    }
    this.servers[index] = new LoggedProcess(
      this.serverCommand(index),
      `${this.dir}/server-${index}.${this.#logCounter++}.log`,
    );
  }

  /** Starts (or restarts) the filewriter on its data directory. */
  startFilewriter(): void {
    this.filewriter = new LoggedProcess(
      [
        ...dlockCommand(),
        "filewriter",
        "--listen",
        this.filewriterAddress,
        "--backend",
        `file:${this.dir}/filewriter`,
      ],
      `${this.dir}/filewriter.${this.#logCounter++}.log`,
    );
  }

  /** kill -9 of server `index`. */
  async killServer(index: number): Promise<void> {
    await this.servers[index]?.kill();
  }

  /** Index of the server at `address`. */
  indexOf(address: string): number {
    const index = this.addresses.indexOf(address);
    if (index < 0) throw new Error(`${address} is not a member`);
    return index;
  }

  /** Waits (bounded) until a leader answers Status as leader; returns its status. */
  async waitForLeader(
    timeoutMs = 30_000,
    excluding: string | null = null,
  ): Promise<StatusResponse> {
    const deadline = performance.now() + timeoutMs;
    let last = "no answer yet";
    while (performance.now() < deadline) {
      const candidates = this.addresses.filter((address, index) =>
        address !== excluding && this.servers[index] !== null && !this.servers[index]?.hasExited
      );
      try {
        const status = await fetchStatus(candidates, { timeoutMs: 2_000, locksLimit: 100 });
        if (status.leader !== "" && status.leader !== excluding) {
          const fromLeader = await fetchStatus([status.leader], { timeoutMs: 2_000 });
          if (fromLeader.role === "leader" && fromLeader.self === status.leader) return fromLeader;
          last = `${status.leader} answered as ${fromLeader.role}`;
        } else {
          last = `no leader (asked ${status.self})`;
        }
      } catch (error) {
        last = error instanceof Error ? error.message : String(error);
      }
      await sleep(100);
    }
    throw new Error(`no leader within ${timeoutMs} ms: ${last}\n${await this.logs()}`);
  }

  /** Waits (bounded) until the filewriter accepts connections. */
  async waitForFilewriter(timeoutMs = 20_000): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (performance.now() < deadline) {
      try {
        const response = await fetch(`http://${this.filewriterAddress}/healthz`);
        await response.body?.cancel();
        if (response.ok) return;
      } catch {
        // Not up yet.
      }
      await sleep(100);
    }
    throw new Error(`filewriter not up within ${timeoutMs} ms\n${await this.logs()}`);
  }

  /** The tail of every process's log, for failure messages. */
  async logs(lines = 30): Promise<string> {
    const parts: string[] = [];
    for (const process of [...this.servers, this.filewriter]) {
      if (process === null || process === undefined) continue;
      const text = (await process.log()).trimEnd().split("\n").slice(-lines).join("\n");
      parts.push(`--- ${process.logPath}\n${text}`);
    }
    return parts.join("\n");
  }

  /** kill -9 of everything; removes the data unless DLOCK_TEST_KEEP is set. */
  async stop(): Promise<void> {
    await Promise.all(
      [...this.servers, this.filewriter].map((process) => process?.kill().catch(() => {})),
    );
    if (Deno.env.get("DLOCK_TEST_KEEP") === undefined) {
      await Deno.remove(this.dir, { recursive: true }).catch(() => {});
    } else {
      console.error(`kept ${this.dir}`);
    }
  }
}

/** Starts a cluster (servers with the original command line, and a filewriter) and waits for a leader. */
export async function startCluster(options: ClusterOptions = {}): Promise<TestCluster> {
  const settings: Required<ClusterOptions> = {
    servers: options.servers ?? 3,
    electionMs: options.electionMs ?? 150,
    heartbeatMs: options.heartbeatMs ?? 30,
  };
  const dir = await Deno.makeTempDir({ prefix: "dlock-it-" });
  const cluster = new TestCluster(dir, freeServerPorts(settings.servers + 1), settings);
  try {
    cluster.startFilewriter();
    for (let index = 0; index < settings.servers; index++) cluster.startServer(index);
    await cluster.waitForFilewriter();
    await cluster.waitForLeader();
    return cluster;
  } catch (error) {
    await cluster.stop();
    throw error;
  }
}

/** A test agent process (`_agent.ts`) driven by JSON lines on stdin. */
export class Agent {
  readonly process: LoggedProcess;
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  #lines: AsyncIterator<string>;
  #stopped = false;

  constructor(dir: string, name: string, args: string[]) {
    this.process = new LoggedProcess(
      [...scriptCommand("./_agent.ts"), ...args],
      `${dir}/agent-${name}.log`,
      { stdin: "piped" },
    );
    this.#writer = this.process.child.stdin.getWriter();
    // The agent's answers go to its log file; read them back line by line.
    this.#lines = tailLines(this.process.logPath, () => this.#stopped)[Symbol.asyncIterator]();
  }

  /** Sends one command without waiting for its answer. */
  async send(command: Record<string, unknown>): Promise<void> {
    await this.#writer.write(new TextEncoder().encode(JSON.stringify(command) + "\n"));
  }

  /** The next answer line that is a JSON object (bounded wait). */
  async next(timeoutMs = 20_000): Promise<Record<string, unknown>> {
    const deadline = performance.now() + timeoutMs;
    while (performance.now() < deadline) {
      const line = await withTimeout(
        this.#lines.next(),
        Math.max(1, deadline - performance.now()),
        `an answer from agent ${this.process.logPath}`,
      );
      if (line.done) break;
      if (line.value.startsWith("{")) return JSON.parse(line.value) as Record<string, unknown>;
    }
    throw new Error(`no answer from ${this.process.logPath}:\n${await this.process.log()}`);
  }

  /** Sends a command and waits for its answer. */
  async call(
    command: Record<string, unknown>,
    timeoutMs = 20_000,
  ): Promise<Record<string, unknown>> {
    await this.send(command);
    return await this.next(timeoutMs);
  }

  /**
   * kill -9. The process dies before its stdin is closed: an agent that saw end of input
   * first would close its session on the way out (a graceful exit, not a kill), which
   * raced the kill and once handed its lock on at once.
   */
  async kill(): Promise<void> {
    this.#stopped = true;
    await this.process.kill();
    await this.#writer.close().catch(() => {});
  }
}

async function* tailLines(path: string, stopped: () => boolean): AsyncGenerator<string> {
  let offset = 0;
  let buffered = "";
  const decoder = new TextDecoder();
  while (!stopped()) {
    let bytes: Uint8Array;
    try {
      bytes = await Deno.readFile(path);
    } catch {
      bytes = new Uint8Array();
    }
    if (bytes.length > offset) {
      buffered += decoder.decode(bytes.subarray(offset));
      offset = bytes.length;
      let newline = buffered.indexOf("\n");
      while (newline >= 0) {
        yield buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        newline = buffered.indexOf("\n");
      }
    }
    await sleep(20);
  }
}

/** Runs the dlock CLI to completion (bounded) and returns its exit code and output. */
export async function runDlock(
  args: string[],
  options: { stdin?: string; env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const [program, ...rest] = dlockCommand() as [string, ...string[]];
  const child = new Deno.Command(program, {
    args: [...rest, ...args],
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
    env: options.env ?? {},
  }).spawn();
  if (options.stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(options.stdin));
    await writer.close();
  }
  const timeoutMs = options.timeoutMs ?? 60_000;
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch {
      // Exited.
    }
  }, timeoutMs);
  try {
    const output = await child.output();
    return {
      code: output.code,
      stdout: new TextDecoder().decode(output.stdout),
      stderr: new TextDecoder().decode(output.stderr),
    };
  } finally {
    clearTimeout(timer);
  }
}

/** A client logger that keeps timestamped lines, to print when a test fails. */
export function traceLogger(prefix: string, lines: string[]) {
  const started = performance.now();
  const note = (level: string) => (message: string) =>
    lines.push(`${Math.round(performance.now() - started)} ms ${prefix} ${level} ${message}`);
  return { debug: note("debug"), warn: note("warn") };
}

/**
 * Marks `promise` as handled now (so a rejection while the test awaits something else
 * is not an "uncaught error" that aborts the whole file) and returns it to await later.
 */
export function handled<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => {});
  return promise;
}

/** Resolves after `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Rejects when `promise` takes longer than `ms`. */
export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`timed out after ${Math.round(ms)} ms waiting for ${what}`)),
      ms,
    );
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Polls `check` until it returns a value other than undefined (bounded). */
export async function eventually<T>(
  check: () => Promise<T | undefined>,
  timeoutMs: number,
  what: string,
): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  let lastError: unknown = null;
  while (performance.now() < deadline) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (error) {
      lastError = error;
    }
    await sleep(100);
  }
  throw new Error(
    `timed out after ${timeoutMs} ms waiting for ${what}` + (lastError ? `: ${lastError}` : ""),
  );
}

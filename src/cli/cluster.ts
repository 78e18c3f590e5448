/**
 * `dlock cluster up|down|status`: a local cluster for trying dlock out. `up` starts N
 * lock servers (with the original command line) and a filewriter in the background,
 * detached so they outlive this command, with logs and data under one folder and
 * their PIDs in `<dir>/cluster.json`; it returns once a leader is elected. `down`
 * stops them by PID (SIGTERM, then SIGKILL after a bound). `status` shows which run.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { fetchStatus, type StatusResponse } from "../client/mod.ts";
import { describeError, UsageError } from "./_client_args.ts";
import { usageFailure } from "./_usage.ts";
import { checkServerFlags } from "./server.ts";

const usage = `Usage: dlock cluster up|down|status [options]

  up       start N lock servers and a filewriter in the background and wait for a leader
  down     stop them (SIGTERM, then SIGKILL after 10 s)
  status   show which of them run, and the leader

Options:
  --dir DIR              folder for logs, data and the PID file (default .dlock)
  --servers N            number of lock servers, 3 or 5 (up; default 3)
  --host HOST            address to listen on (up; default 127.0.0.1)
  --base-port P          first server port; servers use P, P+1, ... (up; default 5000)
  --filewriter-port P    filewriter port (up; default 8080)
  --session-ttl S        passed to every server (up; default: the server's)
  --election-ms N        passed to every server (up; default: the server's)
  --heartbeat-ms N       passed to every server (up; default: the server's)
  --wait S               how long up waits for a leader (default 30)
  -h, --help             show this help

Example:
  dlock cluster up && dlock status && dlock cluster down`;

/** One process of the cluster, as recorded in the PID file. */
export type ClusterProcess = {
  role: "server" | "filewriter";
  address: string;
  pid: number;
  log: string;
  command: string[];
};

/** The PID file `<dir>/cluster.json`. */
export type ClusterFile = { startedAt: string; processes: ClusterProcess[] };

const stopGraceMs = 10_000;

type Options = {
  dir: string;
  servers: number;
  host: string;
  basePort: number;
  filewriterPort: number;
  /** Flags passed to every server, checked by the rules of `dlock server`. */
  serverFlags: string[];
  waitMs: number;
};

/**
 * Parses the command line of `dlock cluster`.
 * @returns the action and options, or an exit code when there is nothing to do (--help).
 * @throws {UsageError} for a bad command line, including server flags (`--session-ttl 0`)
 * that every server it would start would refuse.
 */
export function parseClusterArgs(args: string[]): { action: string; options: Options } | number {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      dir: { type: "string", default: ".dlock" },
      servers: { type: "string", default: "3" },
      host: { type: "string", default: "127.0.0.1" },
      "base-port": { type: "string", default: "5000" },
      "filewriter-port": { type: "string", default: "8080" },
      "session-ttl": { type: "string" },
      "election-ms": { type: "string" },
      "heartbeat-ms": { type: "string" },
      wait: { type: "string", default: "30" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help === true) {
    console.log(usage);
    return 0;
  }
  const [action, ...extra] = positionals;
  if (action === undefined) throw new UsageError("missing the action: up, down or status");
  if (!["up", "down", "status"].includes(action)) {
    throw new UsageError(`unknown action '${action}'`);
  }
  if (extra.length > 0) throw new UsageError(`unexpected arguments: ${extra.join(" ")}`);
  const servers = Number(values.servers);
  if (servers !== 3 && servers !== 5) {
    throw new UsageError(`--servers must be 3 or 5: received ${values.servers}`);
  }
  const basePort = port(values["base-port"], "--base-port");
  const filewriterPort = port(values["filewriter-port"], "--filewriter-port");
  if (filewriterPort >= basePort && filewriterPort < basePort + servers) {
    throw new UsageError(`--filewriter-port ${filewriterPort} collides with the server ports`);
  }
  const serverFlags: string[] = [];
  for (const flag of ["session-ttl", "election-ms", "heartbeat-ms"] as const) {
    const value = values[flag];
    if (value !== undefined) serverFlags.push(`--${flag}`, value);
  }
  checkServerFlags(serverFlags);
  const waitSeconds = Number(values.wait);
  if (!Number.isFinite(waitSeconds) || waitSeconds <= 0) {
    throw new UsageError(`--wait must be a number of seconds > 0: received ${values.wait}`);
  }
  return {
    action,
    options: {
      dir: values.dir,
      servers,
      host: values.host,
      basePort,
      filewriterPort,
      serverFlags,
      waitMs: waitSeconds * 1000,
    },
  };
}

function port(text: string, option: string): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1 || value > 65535) {
    throw new UsageError(`${option} must be a port number: received ${text}`);
  }
  return value;
}

/** Runs `dlock cluster`; returns the exit code. */
export async function run(args: string[]): Promise<number> {
  let parsed: { action: string; options: Options } | number;
  try {
    parsed = parseClusterArgs(args);
  } catch (error) {
    return usageFailure("cluster", usage, error);
  }
  if (typeof parsed === "number") return parsed;
  const { action, options } = parsed;
  try {
    if (action === "up") return await up(options);
    if (action === "down") return await down(options.dir);
    return await status(options.dir);
  } catch (error) {
    console.error(`dlock cluster ${action}: ${describeError(error)}`);
    return 1;
  }
}

/** The command line that runs this dlock (a compiled binary, or deno with src/main.ts). */
export function dlockCommand(): string[] {
  const executable = Deno.execPath();
  const base = executable.split(/[\\/]/).at(-1) ?? "";
  if (base !== "deno" && base !== "deno.exe") return [executable];
  const main = fileURLToPath(new URL("../main.ts", import.meta.url));
  const config = fileURLToPath(new URL("../../deno.json", import.meta.url));
  return [executable, "run", "-A", "--config", config, main];
}

async function up(options: Options): Promise<number> {
  const statePath = `${options.dir}/cluster.json`;
  const previous = await readClusterFile(statePath);
  if (previous !== null && (await Promise.all(previous.processes.map(isRunning))).some((a) => a)) {
    throw new UsageError(
      `a cluster started from ${options.dir} is still running: run 'dlock cluster down --dir ${options.dir}' first`,
    );
  }
  const servers = Array.from(
    { length: options.servers },
    (_, index) => `${options.host}:${options.basePort + index}`,
  );
  const filewriter = `${options.host}:${options.filewriterPort}`;
  for (const address of [...servers, filewriter]) assertPortFree(options.host, address);
  await Deno.mkdir(`${options.dir}/logs`, { recursive: true });
  await Deno.mkdir(`${options.dir}/data`, { recursive: true });
  const dlock = dlockCommand();
  const state: ClusterFile = { startedAt: new Date().toISOString(), processes: [] };
  // Where each log stood before this run: logs are appended to, and an error left there by
  // an earlier run is not the cause of this one.
  const logStarts = new Map<number, number>();
  const record = async ({ logStart, ...process }: ClusterProcess & { logStart: number }) => {
    state.processes.push(process);
    logStarts.set(process.pid, logStart);
    await Deno.writeTextFile(statePath, JSON.stringify(state, null, 2) + "\n");
  };
  await record(spawnDetached("filewriter", filewriter, [
    ...dlock,
    "filewriter",
    "--listen",
    filewriter,
    "--backend",
    `file:${options.dir}/data/filewriter`,
  ], `${options.dir}/logs/filewriter.log`));
  for (const self of servers) {
    const peers = servers.filter((address) => address !== self);
    const flags: string[] = [
      "--data-dir",
      `${options.dir}/data/${self.replace(/[:]/g, "_")}`,
      ...options.serverFlags,
    ];
    // The original command line: dlock server SELF PEER... FILEWRITER.
    await record(spawnDetached("server", self, [
      ...dlock,
      "server",
      self,
      ...peers,
      filewriter,
      ...flags,
    ], `${options.dir}/logs/server-${self.replace(/[:]/g, "_")}.log`));
  }
  const outcome = await waitForCluster(state, servers, filewriter, options.waitMs);
  if (outcome.exited.length > 0) {
    for (const process of outcome.exited) {
      console.error(`dlock cluster up: ${process.role} ${process.address} exited:`);
      console.error(
        indent(await errorLines(process.log, logStarts.get(process.pid) ?? 0)),
      );
    }
    // Nothing half-started is left behind, so the next 'cluster up' can run.
    const stopped = await stopProcesses(state.processes);
    await Deno.remove(statePath).catch(() => {});
    console.error(
      `dlock cluster up: stopped the ${stopped.length} started process` +
        `${stopped.length === 1 ? "" : "es"} still running; ` +
        `logs are in ${options.dir}/logs`,
    );
    return 1;
  }
  const leader = outcome.leader;
  if (leader === null) {
    console.error(
      `dlock cluster up: no leader within ${
        options.waitMs / 1000
      } s; logs are in ${options.dir}/logs ` +
        `(the processes keep running: 'dlock cluster down --dir ${options.dir}' stops them)`,
    );
    return 1;
  }
  printCluster(state, leader);
  console.log(`logs and data: ${options.dir}    pids: ${statePath}`);
  const serverList = servers.join(",");
  if (serverList !== "127.0.0.1:5000,127.0.0.1:5001,127.0.0.1:5002") {
    console.log(`for the client commands: export DLOCK_SERVERS=${serverList}`);
  }
  console.log(
    `next: dlock client ${servers[0]} alice   |   dlock status   |   dlock cluster down` +
      (options.dir === ".dlock" ? "" : ` --dir ${options.dir}`),
  );
  return 0;
}

function spawnDetached(
  role: ClusterProcess["role"],
  address: string,
  command: string[],
  log: string,
): ClusterProcess & { logStart: number } {
  let logStart = 0;
  try {
    logStart = Deno.statSync(log).size;
  } catch {
    // No log yet.
  }
  // sh execs the command (same PID) with output appended to the log, so that the
  // process needs nothing from us once we exit.
  const child = new Deno.Command("sh", {
    args: ["-c", 'log=$1; shift; exec "$@" >>"$log" 2>&1 </dev/null', "sh", log, ...command],
    stdin: "null",
    stdout: "null",
    stderr: "null",
    detached: true,
  }).spawn();
  child.unref();
  return { role, address, pid: child.pid, log, command, logStart };
}

/**
 * Waits for a leader and a listening filewriter. Stops at once when a process exits: the
 * cluster it belongs to cannot come up as started.
 * @returns the leader's status, or null on timeout; and the processes that exited.
 */
async function waitForCluster(
  state: ClusterFile,
  servers: string[],
  filewriter: string,
  waitMs: number,
): Promise<{ leader: StatusResponse | null; exited: ClusterProcess[] }> {
  const deadline = performance.now() + waitMs;
  let filewriterUp = false;
  while (performance.now() < deadline) {
    const exited = [];
    for (const process of state.processes) if (!(await isRunning(process))) exited.push(process);
    if (exited.length > 0) return { leader: null, exited };
    filewriterUp ||= await canConnect(filewriter);
    try {
      const status = await fetchStatus(servers, { timeoutMs: 1_000, locksLimit: 1 });
      if (status.leader !== "" && filewriterUp) return { leader: status, exited: [] };
    } catch {
      // Not up yet.
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  return { leader: null, exited: [] };
}

function printCluster(state: ClusterFile, status: StatusResponse | null): void {
  for (const process of state.processes) {
    const isLeader = status !== null && status.leader === process.address;
    const line =
      `  ${process.role.padEnd(10)} ${process.address.padEnd(21)} pid ${
        String(process.pid).padEnd(8)
      }` +
      (isLeader ? " leader" : "");
    console.log(line.trimEnd());
  }
  if (status !== null) console.log(leaderLine(status));
}

/** `leader ADDRESS, term N`, with `(none)` while no leader is known (an election). */
export function leaderLine(status: Pick<StatusResponse, "leader" | "term">): string {
  return `leader ${status.leader === "" ? "(none)" : status.leader}, term ${status.term}`;
}

async function down(dir: string): Promise<number> {
  const statePath = `${dir}/cluster.json`;
  const state = await readClusterFile(statePath);
  if (state === null) {
    console.log(`no cluster recorded in ${statePath}: nothing to stop`);
    return 0;
  }
  const running = await stopProcesses(state.processes);
  for (const process of running) {
    console.log(
      `  stopped ${process.role.padEnd(10)} ${process.address.padEnd(21)} pid ${process.pid}`,
    );
  }
  await Deno.remove(statePath);
  console.log(`cluster in ${dir} stopped (${running.length} processes); logs and data kept`);
  return 0;
}

/**
 * Stops the processes that still run: SIGTERM, then SIGKILL after {@link stopGraceMs}.
 * @returns the processes that were running.
 */
async function stopProcesses(processes: ClusterProcess[]): Promise<ClusterProcess[]> {
  const running: ClusterProcess[] = [];
  for (const process of processes) if (await isRunning(process)) running.push(process);
  // Servers first (a leader hands over; clients see a clean shutdown), filewriter last.
  running.sort((a, b) => (a.role === "filewriter" ? 1 : 0) - (b.role === "filewriter" ? 1 : 0));
  for (const process of running) signal(process.pid, "SIGTERM");
  const deadline = performance.now() + stopGraceMs;
  let left = running;
  while (left.length > 0 && performance.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    const still: ClusterProcess[] = [];
    for (const process of left) if (await isRunning(process)) still.push(process);
    left = still;
  }
  for (const process of left) {
    console.log(
      `  ${process.role} ${process.address} (pid ${process.pid}) ignored SIGTERM: SIGKILL`,
    );
    signal(process.pid, "SIGKILL");
  }
  return running;
}

async function status(dir: string): Promise<number> {
  const state = await readClusterFile(`${dir}/cluster.json`);
  if (state === null) {
    console.log(`no cluster recorded in ${dir}/cluster.json`);
    return 1;
  }
  const servers = state.processes.filter((p) => p.role === "server").map((p) => p.address);
  let cluster: StatusResponse | null = null;
  try {
    cluster = await fetchStatus(servers, { timeoutMs: 3_000, locksLimit: 1 });
  } catch (error) {
    console.log(`no leader reachable: ${describeError(error)}`);
  }
  let running = 0;
  for (const process of state.processes) {
    const alive = await isRunning(process);
    if (alive) running++;
    const leader = cluster !== null && cluster.leader === process.address ? " leader" : "";
    console.log(
      `  ${process.role.padEnd(10)} ${process.address.padEnd(21)} pid ${
        String(process.pid).padEnd(8)
      } ` +
        `${alive ? "running" : "stopped"}${leader}`,
    );
  }
  if (cluster !== null) console.log(leaderLine(cluster));
  console.log(
    `${running} of ${state.processes.length} processes running (started ${state.startedAt})`,
  );
  return running === state.processes.length ? 0 : 1;
}

async function readClusterFile(path: string): Promise<ClusterFile | null> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
  const parsed = JSON.parse(text) as ClusterFile;
  if (!Array.isArray(parsed.processes)) throw new Error(`Cannot read ${path}: no processes list`);
  return parsed;
}

/**
 * True when the recorded process still runs. On Linux it also checks that the PID
 * still belongs to the recorded command (PIDs get reused), and treats zombies as gone.
 */
export async function isRunning(process: { pid: number; address: string }): Promise<boolean> {
  if (await hasProcFs()) {
    try {
      const stat = await Deno.readTextFile(`/proc/${process.pid}/stat`);
      const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
      if (state === "Z" || state === "X") return false;
      const commandLine = await Deno.readTextFile(`/proc/${process.pid}/cmdline`);
      return commandLine.includes(process.address);
    } catch {
      return false;
    }
  }
  const probe = await new Deno.Command("kill", {
    args: ["-0", String(process.pid)],
    stdout: "null",
    stderr: "null",
  }).output();
  return probe.success;
}

async function hasProcFs(): Promise<boolean> {
  try {
    await Deno.stat("/proc/self/stat");
    return true;
  } catch {
    return false;
  }
}

function signal(pid: number, name: Deno.Signal): void {
  try {
    Deno.kill(pid, name);
  } catch {
    // Already gone.
  }
}

function assertPortFree(host: string, address: string): void {
  const portNumber = Number(address.slice(address.lastIndexOf(":") + 1));
  try {
    const listener = Deno.listen({ hostname: host, port: portNumber });
    listener.close();
  } catch (error) {
    throw new UsageError(`cannot use ${address}: ${describeError(error)} (pick another port)`);
  }
}

async function canConnect(address: string): Promise<boolean> {
  const separator = address.lastIndexOf(":");
  try {
    const connection = await Deno.connect({
      hostname: address.slice(0, separator),
      port: Number(address.slice(separator + 1)),
    });
    connection.close();
    return true;
  } catch {
    return false;
  }
}

const errorLinesMax = 5;

/**
 * The lines of a log, from byte `start` on, that say why the process stopped: those with
 * "Cannot" or an error level (text or JSON logs), the first {@link errorLinesMax}; else its
 * last lines. A usage error prints the whole help after its one line, so a plain tail
 * would show only the help.
 */
export async function errorLines(path: string, start: number): Promise<string> {
  let text: string;
  try {
    text = new TextDecoder().decode((await Deno.readFile(path)).subarray(start));
  } catch {
    return "(no log)";
  }
  const lines = text.trimEnd().split("\n");
  const errors = lines.filter((line) =>
    /\bCannot\b|\bERROR\b|"level":"error"|\berror: /.test(line)
  );
  // The first error is the cause; what follows it is often its consequence.
  const shown = errors.length > 0 ? errors.slice(0, errorLinesMax) : lines.slice(-errorLinesMax);
  return shown.join("\n");
}

function indent(text: string): string {
  return text.split("\n").map((line) => `  ${line}`).join("\n");
}

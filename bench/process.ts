/**
 * Child processes of the bench: spawning server members with their output in log files,
 * killing them (always, also on error and Ctrl-C), free loopback ports, and reading
 * RSS and CPU time from /proc.
 *
 * @module
 */

/** A server process started by the bench. */
export type ManagedProcess = {
  readonly label: string;
  readonly pid: number;
  readonly logPath: string;
  /** Resolves when the process has exited (never rejects). */
  readonly exited: Promise<Deno.CommandStatus>;
  /** True once `exited` resolved. */
  hasExited(): boolean;
};

const live = new Map<number, { process: ManagedProcess; child: Deno.ChildProcess }>();

/**
 * Starts `command args` with stdout and stderr appended to `logPath`. The shell `exec`s
 * the command, so the pid is the server's own pid (what `kill -9` and /proc need).
 * The process is tracked until it exits; {@linkcode killAllProcesses} kills it.
 */
export function spawnLogged(
  label: string,
  command: string,
  args: readonly string[],
  options: { logPath: string; cwd?: string; env?: Record<string, string> },
): ManagedProcess {
  const child = new Deno.Command("sh", {
    args: ["-c", 'exec "$@" >>"$BENCH_LOG_PATH" 2>&1', "sh", command, ...args],
    ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
    env: { ...(options.env ?? {}), BENCH_LOG_PATH: options.logPath },
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  let done = false;
  const exited = child.status.then((status) => {
    done = true;
    live.delete(child.pid);
    return status;
  });
  const process: ManagedProcess = {
    label,
    pid: child.pid,
    logPath: options.logPath,
    exited,
    hasExited: () => done,
  };
  live.set(child.pid, { process, child });
  return process;
}

/**
 * Sends `signal` to the process and waits (bounded) for it to exit. SIGKILL is the
 * `kill -9` of the failover scenarios.
 */
export async function killProcess(
  process: ManagedProcess,
  signal: Deno.Signal = "SIGKILL",
  timeoutMs = 10_000,
): Promise<void> {
  if (process.hasExited()) return;
  try {
    Deno.kill(process.pid, signal);
  } catch {
    // Already gone.
  }
  const exited = await withTimeout(process.exited, timeoutMs).then(() => true, () => false);
  if (!exited && signal !== "SIGKILL") await killProcess(process, "SIGKILL", timeoutMs);
}

/** SIGKILLs every process the bench started that is still running, and waits for them. */
export async function killAllProcesses(): Promise<void> {
  const entries = [...live.values()];
  await Promise.all(entries.map((entry) => killProcess(entry.process, "SIGKILL", 5_000)));
}

/** Labels and pids of processes still running (for leak checks). */
export function liveProcesses(): { label: string; pid: number }[] {
  return [...live.values()].map(({ process }) => ({ label: process.label, pid: process.pid }));
}

let handlersInstalled = false;

/**
 * On SIGINT/SIGTERM: kill every child, run `cleanup`, exit 130. On an uncaught error:
 * kill every child and exit 1, so no server outlives the bench. A stray promise
 * rejection (a client library failing in the background after a kill) is logged, not
 * fatal: the scenario that cares sees its own error. Installed once.
 */
export function installSignalCleanup(cleanup: () => Promise<void>): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  const handler = () => {
    console.error("\nbench: interrupted, killing servers ...");
    killAllProcesses().then(cleanup).finally(() => Deno.exit(130));
  };
  Deno.addSignalListener("SIGINT", handler);
  Deno.addSignalListener("SIGTERM", handler);
  globalThis.addEventListener("unhandledrejection", (event) => {
    event.preventDefault();
    console.error(`bench: ignored a background rejection: ${String(event.reason).slice(0, 300)}`);
  });
  globalThis.addEventListener("error", (event) => {
    event.preventDefault();
    console.error(`bench: uncaught error, killing servers: ${String(event.error)}`);
    killAllProcesses().then(cleanup).finally(() => Deno.exit(1));
  });
}

/**
 * `count` distinct free TCP ports on 127.0.0.1 (bound to port 0, then released). Another
 * process could take one before we use it; cluster starts retry with new ports.
 */
export function freePorts(count: number): number[] {
  const listeners: Deno.Listener[] = [];
  try {
    for (let i = 0; i < count; i++) listeners.push(Deno.listen({ hostname: "127.0.0.1", port: 0 }));
    return listeners.map((listener) => (listener.addr as Deno.NetAddr).port);
  } finally {
    for (const listener of listeners) listener.close();
  }
}

/** Resident set size of `pid` in bytes (VmRSS of /proc/<pid>/status), or null if gone. */
export function readRssBytes(pid: number): Promise<number | null> {
  return readStatusBytes(pid, "VmRSS");
}

/** Peak resident set size of `pid` since it started (VmHWM), in bytes, or null if gone. */
export function readPeakRssBytes(pid: number): Promise<number | null> {
  return readStatusBytes(pid, "VmHWM");
}

async function readStatusBytes(pid: number, field: string): Promise<number | null> {
  try {
    const status = await Deno.readTextFile(`/proc/${pid}/status`);
    const match = new RegExp(`^${field}:\\s+(\\d+)\\s+kB$`, "m").exec(status);
    return match?.[1] === undefined ? null : Number(match[1]) * 1024;
  } catch {
    return null;
  }
}

/** Clock ticks per second of /proc/<pid>/stat (USER_HZ, 100 on Linux). */
const clockTicksPerSecond = 100;

/** User+system CPU seconds consumed by `pid` (and its waited-for children), or null. */
export async function readCpuSeconds(pid: number): Promise<number | null> {
  try {
    const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const utime = Number(fields[11]);
    const stime = Number(fields[12]);
    if (!Number.isFinite(utime) || !Number.isFinite(stime)) return null;
    return (utime + stime) / clockTicksPerSecond;
  } catch {
    return null;
  }
}

/**
 * Rejects with an Error naming `what` when `promise` does not settle within `timeoutMs`.
 * A rejection of `promise` after the timeout is swallowed (it has no reader any more).
 */
export function withTimeout<T>(
  promise: Promise<T>,
  timeoutMs: number,
  what = "operation",
): Promise<T> {
  promise.catch(() => {});
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`Cannot finish ${what} as it took longer than ${timeoutMs} ms`)),
      timeoutMs,
    );
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

let keepWorkDirs = false;

/** With `true`, {@linkcode removeWorkDir} keeps cluster dirs (logs) for inspection. */
export function setKeepWorkDirs(keep: boolean): void {
  keepWorkDirs = keep;
}

/** Removes a cluster's temp dir, or names it on stderr when dirs are kept (`--keep`). */
export async function removeWorkDir(path: string): Promise<void> {
  if (keepWorkDirs) {
    console.error(`bench: kept ${path}`);
    return;
  }
  await Deno.remove(path, { recursive: true }).catch(() => {});
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Polls `probe` every `intervalMs` until it returns a non-null value; throws after
 * `timeoutMs` with the last error seen. Each probe is bounded by `probeTimeoutMs`.
 */
export async function pollUntil<T>(
  what: string,
  probe: () => Promise<T | null>,
  timeoutMs: number,
  intervalMs = 50,
  probeTimeoutMs = 2_000,
): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  let lastError: unknown = null;
  while (performance.now() < deadline) {
    try {
      const value = await withTimeout(
        probe(),
        Math.max(100, Math.min(probeTimeoutMs, timeoutMs)),
        what,
      );
      if (value !== null) return value;
    } catch (error) {
      lastError = error;
    }
    await sleep(intervalMs);
  }
  throw new Error(
    `Cannot wait for ${what} as it did not happen within ${timeoutMs} ms` +
      (lastError === null ? "" : `: last error ${String(lastError)}`),
    { cause: lastError },
  );
}

/** Whether `command` is on PATH or an existing file. */
export async function commandExists(command: string): Promise<boolean> {
  if (command.includes("/")) {
    return await Deno.stat(command).then((info) => info.isFile, () => false);
  }
  const result = await new Deno.Command("sh", {
    args: ["-c", 'command -v "$1" >/dev/null 2>&1', "sh", command],
    stdout: "null",
    stderr: "null",
  }).output();
  return result.success;
}

/** Runs a short command and returns its stdout+stderr (bounded to 10 s). */
export async function commandOutput(command: string, args: string[]): Promise<string> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), 10_000);
  try {
    const result = await new Deno.Command(command, { args, signal: controller.signal }).output();
    const decoder = new TextDecoder();
    return (decoder.decode(result.stdout) + decoder.decode(result.stderr)).trim();
  } finally {
    clearTimeout(timer);
  }
}

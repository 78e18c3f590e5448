/**
 * The process manager of a chaos run: starts the real `dlock` processes with their output
 * appended to a log file, and kills (`SIGKILL`), pauses (`SIGSTOP`), resumes (`SIGCONT`)
 * and restarts them with the same command line.
 *
 * A process is started through `bash -c 'exec "$@" >>LOG 2>&1'` (and `ip netns exec`,
 * which also execs), so the child's pid is the dlock process itself and a signal reaches
 * it directly, with no pipe through the harness to block it.
 *
 * @module
 */

/** An exit the harness did not cause. */
export type UnexpectedExit = { name: string; code: number; signal: string | null; timeMs: number };

/** One restartable process. */
export class ManagedProcess {
  /** Exits the harness did not cause (a crash, or a process that quit on its own). */
  readonly unexpectedExits: UnexpectedExit[] = [];
  /** When set, a crashed process is started again after this delay (null: left down). */
  restartAfterCrashMs: number | null = null;
  /** Called with the pid of every start (the network lab records it for crash cleanup). */
  onStart: ((pid: number) => void) | null = null;
  readonly name: string;
  readonly command: readonly string[];
  readonly logPath: string;
  #child: Deno.ChildProcess | null = null;
  #paused = false;
  #starts = 0;
  #exitExpected = false;

  constructor(name: string, command: readonly string[], logPath: string) {
    this.name = name;
    this.command = command;
    this.logPath = logPath;
  }

  /** True between a start and the process's exit being observed by a kill or stop. */
  get running(): boolean {
    return this.#child !== null;
  }

  get paused(): boolean {
    return this.#paused;
  }

  /** How many times the process was started. */
  get starts(): number {
    return this.#starts;
  }

  get pid(): number | null {
    return this.#child?.pid ?? null;
  }

  /** The exit status promise of the current child (for watching unexpected exits). */
  get status(): Promise<Deno.CommandStatus> | null {
    return this.#child?.status ?? null;
  }

  /**
   * Starts the process (it must not be running).
   * @throws {Error} when it is already running.
   */
  start(): void {
    if (this.#child !== null) throw new Error(`Cannot start ${this.name} as it is running`);
    Deno.writeTextFileSync(
      this.logPath,
      `\n==== ${new Date().toISOString()} start #${this.#starts + 1}: ${this.command.join(" ")}\n`,
      { append: true },
    );
    this.#child = new Deno.Command("bash", {
      args: ["-c", 'exec "$@" >>"$0" 2>&1', this.logPath, ...this.command],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    const child = this.#child;
    this.onStart?.(child.pid);
    this.#exitExpected = false;
    child.status.then((status) => {
      if (this.#child !== child) return; // the harness killed or stopped it
      this.#child = null;
      if (this.#exitExpected) return;
      this.#paused = false;
      this.unexpectedExits.push({
        name: this.name,
        code: status.code,
        signal: status.signal,
        timeMs: Date.now(),
      });
      // Like a service manager (systemd Restart=always): bring a crashed process back.
      const delayMs = this.restartAfterCrashMs;
      if (delayMs !== null) {
        setTimeout(() => {
          if (this.#child === null && this.restartAfterCrashMs !== null) this.start();
        }, delayMs);
      }
    });
    this.#paused = false;
    this.#starts += 1;
  }

  /** `kill -9` and waits for the exit. A paused process dies too. No-op when not running. */
  async kill(): Promise<void> {
    const child = this.#child;
    if (child === null) return;
    this.#child = null;
    this.#paused = false;
    signal(child, "SIGKILL");
    await child.status;
  }

  /** SIGSTOP: the process stops running but keeps its sockets. */
  pause(): void {
    if (this.#child === null || this.#paused) return;
    signal(this.#child, "SIGSTOP");
    this.#paused = true;
  }

  /** SIGCONT. */
  resume(): void {
    if (this.#child === null || !this.#paused) return;
    signal(this.#child, "SIGCONT");
    this.#paused = false;
  }

  /**
   * Asks the process to stop (SIGTERM), and kills it when it has not exited after
   * `graceMs`. Returns its exit code, or null when it had to be killed.
   */
  async stop(graceMs: number): Promise<number | null> {
    const child = this.#child;
    if (child === null) return null;
    this.resume();
    this.#child = null;
    signal(child, "SIGTERM");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const exited = await Promise.race([
      child.status.then((status) => status.code),
      new Promise<null>((resolve) => timer = setTimeout(() => resolve(null), graceMs)),
    ]);
    clearTimeout(timer);
    if (exited === null) {
      signal(child, "SIGKILL");
      await child.status;
    }
    return exited;
  }

  /** From now on, an exit of the current process is expected (not reported as a crash). */
  expectExit(): void {
    this.#exitExpected = true;
  }

  /**
   * Waits up to `timeoutMs` for the process to exit on its own (an expected exit, such as
   * a worker reaching its deadline); returns its code, or null when it is still running.
   */
  async waitExit(timeoutMs: number): Promise<number | null> {
    const child = this.#child;
    if (child === null) return null;
    this.#exitExpected = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const code = await Promise.race([
      child.status.then((status) => status.code),
      new Promise<null>((resolve) => timer = setTimeout(() => resolve(null), timeoutMs)),
    ]);
    clearTimeout(timer);
    return code;
  }
}

function signal(child: Deno.ChildProcess, name: Deno.Signal): void {
  try {
    child.kill(name);
  } catch {
    // The process already exited; its status promise settles on its own.
  }
}

/** Tail of a log file, for error messages. */
export async function tailOfFile(path: string, lines = 20): Promise<string> {
  try {
    return (await Deno.readTextFile(path)).split("\n").slice(-lines).join("\n");
  } catch {
    return "(no log)";
  }
}

/**
 * A free TCP port on `hostname` (bound and released at once; the caller binds it soon).
 */
export function freePort(hostname = "127.0.0.1"): number {
  const listener = Deno.listen({ hostname, port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/**
 * `dlock lock NAME [--ttl S] [--timeout S] -- COMMAND...`: runs COMMAND while holding
 * the lock, as `flock` and `etcdctl lock` do. COMMAND sees DLOCK_LOCK and DLOCK_TOKEN
 * (the fencing token) in its environment. The lock is released when COMMAND exits, and
 * COMMAND's exit code is passed through.
 *
 * COMMAND runs detached, in its own process group, and signals go to the whole group.
 * If the lock is lost while COMMAND runs (the session expired or could not be kept
 * alive), the group gets SIGTERM (SIGKILL 10 s later) and dlock exits with 4: the
 * command must not go on believing it holds the lock.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { limits } from "../limits.ts";
import { connect, type DlockClient, type LockHandle, TimeoutError } from "../client/mod.ts";
import {
  checkClientName,
  closeOnSignalMsMax,
  describeError,
  exitCodeOfSignal,
  resolveServers,
  secondsToMs,
  serversHelp,
  sessionTtlSecondsToMs,
  UsageError,
  withinMs,
} from "./_client_args.ts";
import { usageFailure } from "./_usage.ts";

/** How long COMMAND's group has after SIGTERM (or SIGHUP) before SIGKILL. */
const killGraceMs = 10_000;

const usage = `Usage: dlock lock [SERVER] NAME [options] -- COMMAND [ARG...]

Runs COMMAND while holding the lock NAME. COMMAND's environment has DLOCK_LOCK=NAME
and DLOCK_TOKEN=<fencing token>. The lock is released when COMMAND exits.

Options:
${serversHelp}
  --ttl S                    session TTL in seconds, ${limits.sessionTtlMsMin / 1000}..${
  limits.sessionTtlMsMax / 1000
} (default: the server's, 10)
  --timeout S                give up after S seconds, S > 0, if the lock is not granted by
                             then (finding a leader and opening the session count too)
                             (default: wait as long as it takes)
  --name NAME                client name shown in status (default dlock-lock-<pid>)
  -h, --help                 show this help

Exit codes: COMMAND's own code, passed through (128+N when killed by signal N), else:
  1  cannot reach the cluster, start COMMAND or release the lock
  2  bad usage
  3  timed out before the lock was granted
  4  the lock was lost while COMMAND ran (its process group was sent SIGTERM)
  128+N  signal N (SIGINT, SIGTERM, SIGHUP) came while waiting for the lock: the wait
     is cancelled and the session closed (within ${closeOnSignalMsMax / 1000} s); COMMAND is not run
As COMMAND's own code is passed through, 1, 3 or 4 may also come from COMMAND; when
they come from dlock, a line starting "dlock lock:" is printed on stderr.

Signals: COMMAND runs in its own process group (and session), and signals go to that
whole group, so processes COMMAND starts get them too. SIGINT, SIGTERM and SIGHUP sent to
dlock lock are forwarded to the group; after SIGTERM or SIGHUP the group is sent SIGKILL
if it has not exited ${
  killGraceMs / 1000
} s later. When the lock is lost the group is sent SIGTERM, then
SIGKILL after ${killGraceMs / 1000} s. The lock is released once COMMAND has exited (after a signal,
once its whole group has). Processes COMMAND leaves in the background when it exits
normally are not waited for. COMMAND has no controlling terminal: its stdin, stdout and
stderr are dlock's, but it cannot open /dev/tty (password prompts of ssh or sudo), and
Ctrl-C at a terminal reaches it through dlock.

Example:
  dlock lock backups --timeout 30 -- sh -c 'echo "token $DLOCK_TOKEN"; ./backup.sh'`;

/** Exit code when the lock was not acquired in time. */
export const exitTimeout = 3;
/** Exit code when the lock was lost while the command ran. */
export const exitLockLost = 4;
/** The client library's default bound on finding a leader and opening the session. */
const connectRetryMsMax = 15_000;

type Settings = {
  lock: string;
  command: string[];
  servers: string[];
  ttlMs: number;
  timeoutMs: number;
  name: string;
};

function parseSettings(args: string[]): Settings | number {
  const separator = args.indexOf("--");
  const own = separator < 0 ? args : args.slice(0, separator);
  const command = separator < 0 ? [] : args.slice(separator + 1);
  const { values, positionals } = parseArgs({
    args: own,
    allowPositionals: true,
    options: {
      servers: { type: "string" },
      ttl: { type: "string" },
      timeout: { type: "string" },
      name: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help === true) {
    console.log(usage);
    return 0;
  }
  // An optional SERVER may come first, as in `dlock lock 127.0.0.1:5000 NAME -- ...`: with
  // two positionals the first is the server (checked as an address); one is the lock NAME.
  const serverPositional = positionals.length === 2 ? positionals.shift() : undefined;
  const [lock, ...extra] = positionals;
  if (lock === undefined) throw new UsageError("missing the lock NAME");
  if (extra.length > 0) {
    throw new UsageError(`unexpected arguments before '--': ${extra.join(" ")}`);
  }
  if (command.length === 0) {
    throw new UsageError("missing '-- COMMAND' to run while holding the lock");
  }
  return {
    lock,
    command,
    servers: resolveServers(values.servers, serverPositional),
    ttlMs: values.ttl === undefined ? 0 : sessionTtlSecondsToMs(values.ttl, "--ttl"),
    timeoutMs: values.timeout === undefined ? 0 : secondsToMs(values.timeout, "--timeout"),
    name: values.name === undefined ? `dlock-lock-${Deno.pid}` : checkClientName(values.name),
  };
}

/** Runs `dlock lock`; returns the exit code. */
export async function run(args: string[]): Promise<number> {
  let settings: Settings | number;
  try {
    settings = parseSettings(args);
  } catch (error) {
    return usageFailure("lock", usage, error);
  }
  if (typeof settings === "number") return settings;
  // --timeout bounds everything before the lock is granted: finding a leader, opening the
  // session, and waiting in the queue.
  const startedAtMs = performance.now();
  const timed = settings.timeoutMs > 0;
  const remainingMs = () => settings.timeoutMs - (performance.now() - startedAtMs);
  const timedOut = (what: string) => {
    console.error(`dlock lock: timed out after ${settings.timeoutMs / 1000} s ${what}`);
    return exitTimeout;
  };
  let client: DlockClient;
  try {
    client = await connect(settings.servers, {
      name: settings.name,
      ttlMs: settings.ttlMs,
      ...(timed ? { connectTimeoutMs: Math.min(settings.timeoutMs, connectRetryMsMax) } : {}),
    });
  } catch (error) {
    if (timed && remainingMs() <= 0) {
      return timedOut(
        `opening a session on ${settings.servers.join(",")}: ${describeError(error)}`,
      );
    }
    console.error(
      `dlock lock: cannot open a session on ${settings.servers.join(",")}: ${describeError(error)}`,
    );
    return 1;
  }
  // One set of listeners for SIGINT, SIGTERM and SIGHUP from here on, so that no signal
  // falls between phases and kills dlock while a session or COMMAND is alive. While
  // waiting: leave the queue and close the session (within closeOnSignalMsMax) rather than
  // die queued until the TTL runs out. While COMMAND runs: forwarded to its process group
  // (runHolding). After COMMAND exited: exit at once (the session then expires by its TTL).
  const stop = new AbortController();
  let stoppedBy: Deno.Signal | null = null;
  const signals = new SignalListeners((signal) => {
    if (stoppedBy !== null) Deno.exit(exitCodeOfSignal(stoppedBy)); // A second signal.
    stoppedBy = signal;
    stop.abort();
  });
  try {
    let lock: LockHandle;
    try {
      lock = await client.acquire(settings.lock, {
        timeoutMs: timed ? Math.max(1, Math.ceil(remainingMs())) : 0,
        signal: stop.signal,
      });
    } catch (error) {
      if (stoppedBy !== null) {
        console.error(`dlock lock: ${stoppedBy} while waiting for ${settings.lock}: gave up`);
        await closeWithin(client, closeOnSignalMsMax);
        return exitCodeOfSignal(stoppedBy);
      }
      if (error instanceof TimeoutError) return timedOut(`waiting for ${settings.lock}`);
      console.error(`dlock lock: cannot acquire ${settings.lock}: ${describeError(error)}`);
      return 1;
    }
    return await runHolding(lock, settings, signals);
  } finally {
    signals.handle((signal) => Deno.exit(exitCodeOfSignal(signal)));
    // After a signal the close already ran, bounded; closing again would wait for it unbounded.
    if (stoppedBy === null) {
      await client.close().catch((error) => {
        console.error(`dlock lock: cannot close the session cleanly: ${describeError(error)}`);
      });
    }
    signals.remove();
  }
}

/** Listens to SIGINT, SIGTERM and SIGHUP for the whole run; the handler changes by phase. */
class SignalListeners {
  #handler: (signal: Deno.Signal) => void;
  readonly #removers: (() => void)[];

  constructor(handler: (signal: Deno.Signal) => void) {
    this.#handler = handler;
    this.#removers = (["SIGINT", "SIGTERM", "SIGHUP"] as const).map((signal) => {
      const listener = () => this.#handler(signal);
      Deno.addSignalListener(signal, listener);
      return () => Deno.removeSignalListener(signal, listener);
    });
  }

  handle(handler: (signal: Deno.Signal) => void): void {
    this.#handler = handler;
  }

  remove(): void {
    for (const remove of this.#removers) remove();
  }
}

/** Closes the session, or gives up after `boundMs` (the session then expires by its TTL). */
async function closeWithin(client: DlockClient, boundMs: number): Promise<void> {
  const closed = client.close().then(() => "closed" as const, (error: unknown) => error);
  const outcome = await withinMs(closed, boundMs);
  if (outcome === "late") {
    console.error(
      `dlock lock: cannot close the session within ${boundMs / 1000} s; ` +
        "it ends when its TTL runs out",
    );
  } else if (outcome !== "closed") {
    console.error(`dlock lock: cannot close the session cleanly: ${describeError(outcome)}`);
  }
}

/**
 * COMMAND's process group. COMMAND is started detached (its own session, so its own process
 * group whose id is its pid), and signals go to the whole group: processes COMMAND started
 * get them too, so none goes on working after the lock is lost or given back.
 */
class CommandGroup {
  readonly #pid: number;
  #killAtMs: number | null = null;
  #killTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(pid: number) {
    this.#pid = pid;
  }

  /** Sends `signal` to every process in the group; nothing when the group is gone. */
  signal(signal: Deno.Signal): void {
    try {
      Deno.kill(-this.#pid, signal);
    } catch {
      // The group is gone.
    }
  }

  /** `signal` now, SIGKILL killGraceMs after the first terminate. */
  terminate(signal: Deno.Signal): void {
    this.signal(signal);
    if (this.#killAtMs !== null) return;
    this.#killAtMs = performance.now() + killGraceMs;
    this.#killTimer = setTimeout(() => this.signal("SIGKILL"), killGraceMs);
  }

  /** True while some process is left in the group. */
  get alive(): boolean {
    try {
      Deno.kill(-this.#pid, 0);
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Once COMMAND itself exited after a terminate: waits until the rest of its group has gone
   * too, SIGKILLing it when the grace runs out, so no process of the group outlives the lock.
   * Without a terminate, processes COMMAND left in the background are left alone.
   */
  async settle(): Promise<void> {
    if (this.#killAtMs === null) return;
    while (this.alive && performance.now() < this.#killAtMs) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    clearTimeout(this.#killTimer);
    if (this.alive) this.signal("SIGKILL");
  }
}

/** Runs the command while `lock` is held; kills its process group if the lock is lost. */
async function runHolding(
  lock: LockHandle,
  settings: Settings,
  signals: SignalListeners,
): Promise<number> {
  const [program, ...programArgs] = settings.command as [string, ...string[]];
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(program, {
      args: programArgs,
      env: { DLOCK_LOCK: settings.lock, DLOCK_TOKEN: String(lock.token) },
      stdin: "inherit",
      stdout: "inherit",
      stderr: "inherit",
      detached: true,
    }).spawn();
  } catch (error) {
    console.error(`dlock lock: cannot start ${program}: ${describeError(error)}`);
    await lock.release().catch(() => {});
    return 1;
  }
  const group = new CommandGroup(child.pid);
  let lost = false;
  const onLost = () => {
    lost = true;
    console.error(
      `dlock lock: lost the lock ${settings.lock} (token ${lock.token}) while the command ran: ` +
        `${describeError(lock.signal.reason)}; sending SIGTERM to its process group`,
    );
    group.terminate("SIGTERM");
  };
  lock.signal.addEventListener("abort", onLost, { once: true });
  // Our own signals go to the command's group; we release once it has exited. SIGTERM and
  // SIGHUP ask it to end: SIGKILL follows after killGraceMs. SIGINT may only interrupt an
  // interactive command, so it is passed on and nothing more.
  signals.handle((signal) => signal === "SIGINT" ? group.signal(signal) : group.terminate(signal));
  const status = await child.status;
  await group.settle();
  lock.signal.removeEventListener("abort", onLost);
  if (lost) return exitLockLost;
  try {
    await lock.release();
  } catch (error) {
    console.error(`dlock lock: cannot release ${settings.lock}: ${describeError(error)}`);
    if (status.code === 0) return 1;
  }
  return status.signal !== null ? exitCodeOfSignal(status.signal) : status.code;
}

/**
 * `dlock lock NAME [--ttl S] [--timeout S] -- COMMAND...`: runs COMMAND while holding
 * the lock, as `flock` and `etcdctl lock` do. COMMAND sees DLOCK_LOCK and DLOCK_TOKEN
 * (the fencing token) in its environment. The lock is released when COMMAND exits, and
 * COMMAND's exit code is passed through.
 *
 * If the lock is lost while COMMAND runs (the session expired or could not be kept
 * alive), COMMAND gets SIGTERM (SIGKILL 10 s later) and dlock exits with 4: the
 * command must not go on believing it holds the lock.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { connect, type DlockClient, type LockHandle, TimeoutError } from "../client/mod.ts";
import {
  checkClientName,
  describeError,
  resolveServers,
  secondsToMs,
  serversHelp,
  UsageError,
} from "./_client_args.ts";
import { usageFailure } from "./_usage.ts";

/** Longest a signal while waiting for the lock waits for the session to close. */
const closeOnSignalMsMax = 5_000;

const usage = `Usage: dlock lock [SERVER] NAME [options] -- COMMAND [ARG...]

Runs COMMAND while holding the lock NAME. COMMAND's environment has DLOCK_LOCK=NAME
and DLOCK_TOKEN=<fencing token>. The lock is released when COMMAND exits.

Options:
${serversHelp}
  --ttl S                    session TTL in seconds (default: the server's, 10)
  --timeout S                give up waiting for the lock after S seconds, S > 0
                             (default: wait as long as it takes)
  --name NAME                client name shown in status (default dlock-lock-<pid>)
  -h, --help                 show this help

Exit codes: COMMAND's own code (128+N when killed by signal N); 1 cannot reach the
cluster or start COMMAND; 2 bad usage; 3 timed out waiting for the lock; 4 the lock
was lost while COMMAND ran (COMMAND was sent SIGTERM); 128+N when signal N (SIGINT,
SIGTERM, SIGHUP) came while waiting for the lock: the wait is cancelled and the session
closed (within ${closeOnSignalMsMax / 1000} s). Once COMMAND runs, SIGINT and SIGTERM go to it.

Example:
  dlock lock backups --timeout 30 -- sh -c 'echo "token $DLOCK_TOKEN"; ./backup.sh'`;

/** Exit code when the lock was not acquired in time. */
export const exitTimeout = 3;
/** Exit code when the lock was lost while the command ran. */
export const exitLockLost = 4;
const killGraceMs = 10_000;

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
    ttlMs: values.ttl === undefined ? 0 : secondsToMs(values.ttl, "--ttl"),
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
  let client: DlockClient;
  try {
    client = await connect(settings.servers, { name: settings.name, ttlMs: settings.ttlMs });
  } catch (error) {
    console.error(
      `dlock lock: cannot open a session on ${settings.servers.join(",")}: ${describeError(error)}`,
    );
    return 1;
  }
  // SIGINT, SIGTERM or SIGHUP while waiting: leave the queue and close the session (within
  // closeOnSignalMsMax) rather than die queued until the TTL runs out. Once the command
  // runs, signals are forwarded to it instead (runHolding).
  const stop = new AbortController();
  let stoppedBy: Deno.Signal | null = null;
  const waitSignals: Deno.Signal[] = ["SIGINT", "SIGTERM", "SIGHUP"];
  const removeWaitListeners = waitSignals.map((signal) => {
    const onSignal = () => {
      if (stoppedBy !== null) Deno.exit(128 + signalNumber(stoppedBy)); // A second signal.
      stoppedBy = signal;
      stop.abort();
    };
    Deno.addSignalListener(signal, onSignal);
    return () => Deno.removeSignalListener(signal, onSignal);
  });
  try {
    let lock: LockHandle;
    try {
      lock = await client.acquire(settings.lock, {
        timeoutMs: settings.timeoutMs,
        signal: stop.signal,
      });
    } catch (error) {
      if (stoppedBy !== null) {
        console.error(`dlock lock: ${stoppedBy} while waiting for ${settings.lock}: gave up`);
        await closeWithin(client, closeOnSignalMsMax);
        return 128 + signalNumber(stoppedBy);
      }
      if (error instanceof TimeoutError) {
        console.error(
          `dlock lock: timed out after ${settings.timeoutMs / 1000} s waiting for ${settings.lock}`,
        );
        return exitTimeout;
      }
      console.error(`dlock lock: cannot acquire ${settings.lock}: ${describeError(error)}`);
      return 1;
    } finally {
      for (const remove of removeWaitListeners) remove();
    }
    return await runHolding(lock, settings);
  } finally {
    // After a signal the close already ran, bounded; closing again would wait for it unbounded.
    if (stoppedBy === null) {
      await client.close().catch((error) => {
        console.error(`dlock lock: cannot close the session cleanly: ${describeError(error)}`);
      });
    }
  }
}

/** Closes the session, or gives up after `boundMs` (the session then expires by its TTL). */
async function closeWithin(client: DlockClient, boundMs: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<"late">((resolve) => {
    timer = setTimeout(() => resolve("late"), boundMs);
  });
  const closed = client.close().then(() => "closed" as const, (error: unknown) => error);
  const outcome = await Promise.race([closed, late]);
  clearTimeout(timer);
  if (outcome === "late") {
    console.error(
      `dlock lock: cannot close the session within ${boundMs / 1000} s; ` +
        "it ends when its TTL runs out",
    );
  } else if (outcome !== "closed") {
    console.error(`dlock lock: cannot close the session cleanly: ${describeError(outcome)}`);
  }
}

/** Runs the command while `lock` is held; kills it if the lock is lost. */
async function runHolding(lock: LockHandle, settings: Settings): Promise<number> {
  const [program, ...programArgs] = settings.command as [string, ...string[]];
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(program, {
      args: programArgs,
      env: { DLOCK_LOCK: settings.lock, DLOCK_TOKEN: String(lock.token) },
      stdin: "inherit",
      stdout: "inherit",
      stderr: "inherit",
    }).spawn();
  } catch (error) {
    console.error(`dlock lock: cannot start ${program}: ${describeError(error)}`);
    await lock.release().catch(() => {});
    return 1;
  }
  let lost = false;
  let killTimer: ReturnType<typeof setTimeout> | undefined;
  const onLost = () => {
    lost = true;
    console.error(
      `dlock lock: lost the lock ${settings.lock} (token ${lock.token}) while the command ran: ` +
        `${describeError(lock.signal.reason)}; sending SIGTERM`,
    );
    signalChild(child, "SIGTERM");
    killTimer = setTimeout(() => signalChild(child, "SIGKILL"), killGraceMs);
  };
  lock.signal.addEventListener("abort", onLost, { once: true });
  // Our own SIGINT/SIGTERM go to the command; we release once it has exited.
  const forwarded: Deno.Signal[] = ["SIGINT", "SIGTERM"];
  const forwarders = forwarded.map((signal) => {
    const forward = () => signalChild(child, signal);
    Deno.addSignalListener(signal, forward);
    return () => Deno.removeSignalListener(signal, forward);
  });
  const status = await child.status;
  for (const remove of forwarders) remove();
  lock.signal.removeEventListener("abort", onLost);
  if (killTimer !== undefined) clearTimeout(killTimer);
  if (lost) return exitLockLost;
  try {
    await lock.release();
  } catch (error) {
    console.error(`dlock lock: cannot release ${settings.lock}: ${describeError(error)}`);
    if (status.code === 0) return 1;
  }
  return status.signal !== null ? 128 + signalNumber(status.signal) : status.code;
}

function signalChild(child: Deno.ChildProcess, signal: Deno.Signal): void {
  try {
    child.kill(signal);
  } catch {
    // Already exited.
  }
}

function signalNumber(signal: Deno.Signal): number {
  const numbers: Partial<Record<Deno.Signal, number>> = {
    SIGHUP: 1,
    SIGINT: 2,
    SIGQUIT: 3,
    SIGKILL: 9,
    SIGUSR1: 10,
    SIGSEGV: 11,
    SIGUSR2: 12,
    SIGPIPE: 13,
    SIGALRM: 14,
    SIGTERM: 15,
  };
  return numbers[signal] ?? 1;
}

/**
 * `dlock client [SERVER] [client-name]`: the interactive client of the original project
 * (`acquire [lock]`, `write <file> <data>`, `release [lock]`, `exit`) plus `status` and
 * `help`. Reads commands from stdin, one per line, so it also runs scripts from a pipe:
 * it executes them in order, prints each result, and at end of input releases
 * everything, closes the session and exits (1 if any command failed, else 0).
 *
 * @module
 */
import { parseArgs } from "node:util";
import {
  connect,
  type DlockClient,
  type LockHandle,
  SessionPresumedLostError,
} from "../client/mod.ts";
import {
  checkClientName,
  closeOnSignalMsMax,
  describeError,
  exitCodeOfSignal,
  looksLikeServers,
  resolveServers,
  serversHelp,
  sessionTtlSecondsToMs,
  UsageError,
  withinMs,
} from "./_client_args.ts";
import { formatStatus } from "./status.ts";
import { usageFailure } from "./_usage.ts";
import { limits } from "../limits.ts";

const usage = `Usage: dlock client [SERVER] [client-name] [options]

Interactive lock client. Commands (one per line; also from a pipe):
  acquire [lock]          wait for the lock (default "default"); prints its fencing token
  write <file> <data>     append <data> and a newline to <file> through the lock service,
                          fenced with the token of the lock acquired last; <data> is the
                          rest of the line after <file> and the blanks that follow it
                          (blanks inside <data> are kept, blanks at the end of the line
                          are not)
  release [lock]          release the lock (default: the one acquired last)
  status                  show the cluster: members, leader, sessions, locks
  help                    show the commands
  exit                    release every lock, close the session and quit (also at end of input)

A command given more arguments than it takes prints its usage and does nothing.
Ctrl-C (SIGINT) cancels a waiting acquire; at the prompt it quits like exit (code 130).
SIGTERM and SIGHUP cancel a waiting acquire and quit like exit (codes 143 and 129),
closing the session within ${closeOnSignalMsMax / 1000} s or leaving it to expire.

Options:
${serversHelp}
  --ttl S                    session TTL in seconds, ${limits.sessionTtlMsMin / 1000}..${
  limits.sessionTtlMsMax / 1000
} (default: the server's, ${limits.sessionTtlMsDefault / 1000})
  --name NAME                client name (same as the positional client-name; not empty)
  -h, --help                 show this help

Example:
  dlock client 127.0.0.1:5000 alice
  printf 'acquire\\nwrite file_0 hello\\nrelease\\nexit\\n' | dlock client bob`;

const commandsHelp = `commands:
  acquire [lock]        wait for a lock (default "default") and print its token
  write <file> <data>   append <data> to <file>, fenced by the last acquired lock
                        (<data>: the rest of the line; blanks at its end are dropped)
  release [lock]        release a lock (default: the last acquired)
  status                show the cluster
  help                  this list
  exit                  release everything, close the session and quit`;

/** What `dlock client` runs with. */
export type Settings = { servers: string[]; name: string; ttlMs: number };

/** The commands of the REPL: their usage line and how many arguments they take at most. */
const commandSyntax: Record<string, { usage: string; argumentsMax: number }> = {
  acquire: { usage: "acquire [lock]", argumentsMax: 1 },
  write: { usage: "write <file> <data>", argumentsMax: Infinity },
  release: { usage: "release [lock]", argumentsMax: 1 },
  status: { usage: "status", argumentsMax: 0 },
  help: { usage: "help", argumentsMax: 0 },
  "?": { usage: "?", argumentsMax: 0 },
  exit: { usage: "exit", argumentsMax: 0 },
  quit: { usage: "quit", argumentsMax: 0 },
};

/**
 * Parses `dlock client`'s command line; prints the help and returns 0 for `--help`.
 * @throws {UsageError} for a bad command line.
 */
export function parseClientArgs(args: string[]): Settings | number {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      servers: { type: "string" },
      ttl: { type: "string" },
      name: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help === true) {
    console.log(usage);
    return 0;
  }
  // [SERVER] [client-name]: with two positionals the first is the server; with one, it is
  // the server when it looks like an address (so a forgotten port is reported as such).
  const rest = [...positionals];
  if (rest.length > 2) throw new UsageError(`unexpected arguments: ${rest.slice(2).join(" ")}`);
  const serverPositional = rest.length === 2 || (rest[0] !== undefined && looksLikeServers(rest[0]))
    ? rest.shift()
    : undefined;
  if (rest[0] !== undefined && values.name !== undefined) {
    throw new UsageError("give the client name once (positional or --name)");
  }
  const name = values.name ?? rest[0];
  return {
    servers: resolveServers(values.servers, serverPositional),
    name: name === undefined ? `client-${Deno.pid}` : checkClientName(name),
    ttlMs: values.ttl === undefined ? 0 : sessionTtlSecondsToMs(values.ttl, "--ttl"),
  };
}

/** Runs `dlock client`; returns the exit code. */
export async function run(args: string[]): Promise<number> {
  let settings: Settings | number;
  try {
    settings = parseClientArgs(args);
  } catch (error) {
    return usageFailure("client", usage, error);
  }
  if (typeof settings === "number") return settings;
  const repl = new Repl(settings);
  try {
    await repl.ensureClient();
  } catch (error) {
    console.error(
      `dlock client: cannot open a session on ${settings.servers.join(",")}: ${
        describeError(error)
      }`,
    );
    return 1;
  }
  const interactive = Deno.stdin.isTerminal();
  const listeners = [
    listen("SIGINT", () => repl.interrupt()),
    listen("SIGTERM", () => repl.terminate("SIGTERM")),
    listen("SIGHUP", () => repl.terminate("SIGHUP")),
  ];
  try {
    for await (const line of readLines(Deno.stdin.readable, interactive ? "dlock> " : null)) {
      if (!interactive && line.trim() !== "") console.log(`> ${line.trim()}`);
      const proceed = await repl.execute(line);
      if (!proceed) break;
    }
  } finally {
    await repl.exit();
    for (const remove of listeners) remove();
  }
  if (repl.signalExitCode !== null) return repl.signalExitCode;
  return !interactive && repl.failures > 0 ? 1 : 0;
}

/** Adds a signal listener; returns the function that removes it. */
function listen(signal: Deno.Signal, handler: () => void): () => void {
  Deno.addSignalListener(signal, handler);
  return () => Deno.removeSignalListener(signal, handler);
}

/** The REPL's state: the session (reopened after a loss) and the locks it holds. */
class Repl {
  readonly #settings: Settings;
  #client: DlockClient | null = null;
  /** Sessions lost earlier, whose clients may still be closing them on the cluster. */
  #lost: DlockClient[] = [];
  #last: LockHandle | null = null;
  #current: AbortController | null = null;
  #exiting: Promise<void> | null = null;
  /** Commands that failed. */
  failures = 0;
  /** The exit code once a signal told the REPL to quit (128 + its number), else null. */
  signalExitCode: number | null = null;

  constructor(settings: Settings) {
    this.#settings = settings;
  }

  /** The open session, opening a new one when there is none or it was lost. */
  async ensureClient(): Promise<DlockClient> {
    if (this.#exiting !== null) throw new Error("the session is closing: the client is quitting");
    const client = this.#client;
    if (client !== null && !client.signal.aborted) return client;
    if (client !== null) {
      console.log(`${describeLoss(client)}; opening a new session`);
      // A session given up on is still being closed on the cluster in the background; that
      // goes on while this REPL runs (exit() gives it one more retry bound, then stops it).
      this.#lost.push(client);
      this.#client = null;
      this.#last = null;
    }
    const opened = await connect(this.#settings.servers, {
      name: this.#settings.name,
      ttlMs: this.#settings.ttlMs,
    });
    this.#client = opened;
    console.log(
      `connected as ${opened.name}: session ${opened.sessionId}, ttl ${opened.ttlMs / 1000}s, ` +
        `leader ${opened.leader} (type 'help' for commands)`,
    );
    return opened;
  }

  /** Ctrl-C: cancels the running command, or exits when idle. */
  interrupt(): void {
    if (this.#current !== null && this.signalExitCode === null) {
      this.#current.abort();
      return;
    }
    this.terminate("SIGINT");
  }

  /**
   * SIGTERM, SIGHUP (or SIGINT at the prompt): what `exit` does, from wherever the REPL is:
   * cancels the running command (a waiting acquire leaves the lock's queue), closes the
   * session (releasing its locks) within {@link closeOnSignalMsMax}, and exits the process
   * with 128 + the signal's number. A second signal exits at once.
   */
  terminate(signal: "SIGHUP" | "SIGINT" | "SIGTERM"): void {
    const code = exitCodeOfSignal(signal);
    if (this.signalExitCode !== null) Deno.exit(this.signalExitCode);
    this.signalExitCode = code;
    console.log(`${signal}: quitting like 'exit'`);
    this.#current?.abort();
    void withinMs(this.exit(), closeOnSignalMsMax).then((outcome) => {
      if (outcome === "late") {
        console.log(
          `error: cannot close the session within ${closeOnSignalMsMax / 1000} s; ` +
            "it ends, releasing its locks, when its TTL runs out",
        );
      }
      Deno.exit(code);
    });
  }

  /** Runs one line; returns false when the REPL should stop. */
  async execute(line: string): Promise<boolean> {
    if (this.signalExitCode !== null) return false;
    const trimmed = line.trim();
    if (trimmed === "" || trimmed.startsWith("#")) return true;
    const [command = "", ...words] = trimmed.split(/\s+/);
    this.#current = new AbortController();
    try {
      const syntax = commandSyntax[command.toLowerCase()];
      if (syntax !== undefined && words.length > syntax.argumentsMax) {
        throw new UsageError(`usage: ${syntax.usage}`);
      }
      switch (command.toLowerCase()) {
        case "acquire":
          await this.#acquire(words[0] ?? "default", this.#current.signal);
          return true;
        case "write":
          await this.#write(trimmed);
          return true;
        case "release":
          await this.#release(words[0]);
          return true;
        case "status":
          console.log(formatStatus(await (await this.ensureClient()).status()));
          return true;
        case "help":
        case "?":
          console.log(commandsHelp);
          return true;
        case "exit":
        case "quit":
          return false;
        default:
          this.#fail(`unknown command '${command}' (type 'help' for the commands)`);
          return true;
      }
    } catch (error) {
      this.#fail(describeError(error));
      return true;
    } finally {
      this.#current = null;
    }
  }

  /**
   * Releases every lock and closes the session; no session is opened after it. Idempotent:
   * every call returns the same close.
   */
  exit(): Promise<void> {
    this.#exiting ??= this.#closeSession();
    return this.#exiting;
  }

  async #closeSession(): Promise<void> {
    const lost = this.#lost;
    this.#lost = [];
    const lostClosed = Promise.all(lost.map((client) => client.close().catch(() => {})));
    const client = this.#client;
    this.#client = null;
    await this.#exitClient(client);
    await lostClosed;
  }

  async #exitClient(client: DlockClient | null): Promise<void> {
    if (client === null) return;
    const held = [...client.locks.keys()];
    try {
      await client.close();
      if (!client.signal.aborted) {
        console.log(
          `closed session ${client.sessionId}` +
            (held.length > 0 ? `, released ${held.join(", ")}` : ""),
        );
      }
    } catch (error) {
      console.log(`error: cannot close session ${client.sessionId}: ${describeError(error)}`);
    }
  }

  async #acquire(name: string, signal: AbortSignal): Promise<void> {
    const client = await this.ensureClient();
    const held = client.locks.get(name);
    if (held !== undefined) {
      this.#last = held;
      console.log(`already holding ${name} (token ${held.token})`);
      return;
    }
    const lock = await client.acquire(name, { signal });
    this.#last = lock;
    console.log(`acquired ${name} (token ${lock.token})`);
  }

  async #write(line: string): Promise<void> {
    // The data is the rest of the line after the file name and the blanks that separate them,
    // blanks inside it kept (the line comes trimmed, so blanks at its end are gone); a line
    // without any data is a usage error rather than an empty line appended by mistake.
    const match = /^\s*\S+\s+(\S+)\s+(\S.*)$/.exec(line);
    if (match === null) throw new UsageError("usage: write <file> <data>");
    const file = match[1] as string;
    const data = match[2] as string;
    const lock = this.#last;
    if (lock === null || lock.released) {
      throw new UsageError("no lock held: run 'acquire [lock]' first, then write");
    }
    if (lock.signal.aborted) {
      this.#last = null;
      throw new UsageError(
        `lock ${lock.name} (token ${lock.token}) was lost: ${describeError(lock.signal.reason)}; ` +
          "acquire it again before writing",
      );
    }
    const result = await lock.append(file, data + "\n");
    console.log(
      `wrote ${
        new TextEncoder().encode(data).length + 1
      } bytes to ${file} at offset ${result.offset}` +
        ` (lock ${lock.name}, token ${lock.token})` + (result.duplicate ? " [duplicate]" : ""),
    );
  }

  async #release(name: string | undefined): Promise<void> {
    const client = this.#client;
    const lockName = name ?? this.#last?.name ?? "default";
    const lock = client?.locks.get(lockName) ??
      (this.#last?.name === lockName ? this.#last : undefined);
    if (client === null || lock === undefined || lock.released) {
      throw new UsageError(`not holding ${lockName}`);
    }
    if (this.#last === lock) this.#last = null;
    await lock.release();
    console.log(`released ${lockName}`);
    if (this.#last === null) this.#last = [...client.locks.values()].at(-1) ?? null;
  }

  #fail(message: string): void {
    this.failures++;
    console.log(`error: ${message}`);
  }
}

/** Yields the lines of `readable` (without the newline), printing `prompt` before each. */
async function* readLines(
  readable: ReadableStream<Uint8Array>,
  prompt: string | null,
): AsyncGenerator<string> {
  const encoder = new TextEncoder();
  const showPrompt = () => {
    if (prompt !== null) Deno.stdout.writeSync(encoder.encode(prompt));
  };
  let buffered = "";
  showPrompt();
  for await (const chunk of readable.pipeThrough(new TextDecoderStream())) {
    buffered += chunk;
    let newline = buffered.indexOf("\n");
    while (newline >= 0) {
      const line = buffered.slice(0, newline).replace(/\r$/, "");
      buffered = buffered.slice(newline + 1);
      yield line;
      showPrompt();
      newline = buffered.indexOf("\n");
    }
  }
  if (buffered !== "") yield buffered;
}

/**
 * What became of a lost session, truthfully: a session the cluster reported expired has
 * released its locks; one this client gave up on may still hold them on the cluster.
 */
function describeLoss(client: DlockClient): string {
  if (client.signal.reason instanceof SessionPresumedLostError) {
    return `session ${client.sessionId} given up: no keepalive was confirmed in time, so its ` +
      "locks can no longer be used by this client; the cluster releases them when it closes " +
      "the session (this client keeps asking it to) or expires it";
  }
  return `session ${client.sessionId} expired on the cluster: its locks were released`;
}

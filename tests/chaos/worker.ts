/**
 * A chaos client worker: a separate process that loops acquire → append records →
 * (sometimes sleep) → release against the real cluster through the client library, and
 * records every operation's invocation and completion in its history file.
 *
 * `deno run -A tests/chaos/worker.ts --name w1 --servers a,b,c --filewriter host:port
 *   --locks lock0,lock1 --history FILE --seed S --deadline-ms EPOCH_MS --ttl-ms 3000`
 *
 * The worker is deliberately careless the way real applications are: after its process
 * was paused past its TTL it carries on writing directly to the filewriter with its old
 * token (the fence must stop it), and it does not check its lock's signal first. After
 * an operation with an unknown outcome it closes its session (releasing whatever it may
 * hold) and opens a new one, so it never holds a lock it does not know about.
 *
 * Outcome classification (what "fail" promises: the operation did not take effect):
 * - acquire: TimeoutError, SessionExpiredError → fail; other errors → info.
 * - append through the service: StaleFenceError → fail (the filewriter checks request-id
 *   dedupe before the fence, so a retry of an applied append is never refused);
 *   NotHolderError thrown before sending (the handle was already lost) → fail; any other
 *   error → info (an earlier attempt may have reached the filewriter).
 * - append direct: StaleFenceError → fail; others → info.
 * - release: NotHolderError → fail (the grant was lost); others → info.
 *
 * @module
 */
import { parseArgs } from "node:util";
import {
  connect,
  type DlockClient,
  type LockHandle,
  NotHolderError,
  SessionExpiredError,
  StaleFenceError,
  TimeoutError,
} from "../../src/client/mod.ts";
import { FilewriterClient } from "../../src/filewriter/client.ts";
import { formatRecord } from "./checker.ts";
import { HistoryWriter, type InvokeEvent, nowMs, type OpKind, type Outcome } from "./history.ts";
import { SeededRandom } from "./random.ts";

/** The file a lock's records go to. */
export function fileOfLock(lock: string): string {
  return `file-${lock}`;
}

type WorkerOptions = {
  name: string;
  servers: string[];
  filewriter: string;
  locks: string[];
  historyPath: string;
  seed: number;
  deadlineMs: number;
  ttlMs: number;
};

function parseOptions(args: string[]): WorkerOptions {
  const { values } = parseArgs({
    args,
    options: {
      name: { type: "string" },
      servers: { type: "string" },
      filewriter: { type: "string" },
      locks: { type: "string" },
      history: { type: "string" },
      seed: { type: "string", default: "1" },
      "deadline-ms": { type: "string" },
      "ttl-ms": { type: "string", default: "3000" },
    },
  });
  const required = (value: string | undefined, flag: string): string => {
    if (value === undefined || value === "") throw new Error(`worker: --${flag} is required`);
    return value;
  };
  return {
    name: required(values.name, "name"),
    servers: required(values.servers, "servers").split(","),
    filewriter: required(values.filewriter, "filewriter"),
    locks: required(values.locks, "locks").split(","),
    historyPath: required(values.history, "history"),
    seed: Number(values.seed),
    deadlineMs: Number(required(values["deadline-ms"], "deadline-ms")),
    ttlMs: Number(values["ttl-ms"]),
  };
}

class Worker {
  readonly #options: WorkerOptions;
  readonly #history: HistoryWriter;
  readonly #random: SeededRandom;
  readonly #files: FilewriterClient;
  readonly #stop: AbortSignal;
  #client: DlockClient | null = null;
  #nextOpId = 0;
  #seq = 0;

  constructor(options: WorkerOptions, stop: AbortSignal) {
    this.#options = options;
    this.#history = HistoryWriter.open(options.historyPath);
    this.#random = SeededRandom.derive(options.seed, options.name);
    this.#files = new FilewriterClient(options.filewriter, { timeoutMs: 3_000, attemptsMax: 3 });
    this.#stop = stop;
  }

  #invoke(op: OpKind, fields: Omit<InvokeEvent, "type" | "process" | "opId" | "op" | "timeMs">) {
    const opId = ++this.#nextOpId;
    this.#history.write({
      type: "invoke",
      process: this.#options.name,
      opId,
      op,
      timeMs: nowMs(),
      ...fields,
    });
    return (
      outcome: Outcome,
      extra: { token?: number; error?: unknown; sessionId?: number; duplicate?: boolean } = {},
    ) => {
      const event = {
        type: outcome,
        process: this.#options.name,
        opId,
        op,
        timeMs: nowMs(),
        ...(extra.token !== undefined ? { token: extra.token } : {}),
        ...(extra.sessionId !== undefined ? { sessionId: extra.sessionId } : {}),
        ...(extra.duplicate !== undefined ? { duplicate: extra.duplicate } : {}),
        ...(extra.error !== undefined ? { error: describeError(extra.error) } : {}),
      };
      this.#history.write(event);
    };
  }

  async run(): Promise<void> {
    while (!this.#stopped()) {
      const client = await this.#ensureClient();
      if (client === null) break;
      await this.#iteration(client);
      await sleep(this.#random.int(0, 30), this.#stop);
    }
    await this.#closeClient();
    this.#history.close();
  }

  #stopped(): boolean {
    return this.#stop.aborted || nowMs() >= this.#options.deadlineMs;
  }

  async #ensureClient(): Promise<DlockClient | null> {
    if (this.#client !== null && !this.#client.signal.aborted) return this.#client;
    await this.#closeClient();
    while (!this.#stopped()) {
      const complete = this.#invoke("connect", {});
      try {
        this.#client = await connect(this.#options.servers, {
          name: this.#options.name,
          ttlMs: this.#options.ttlMs,
          retryTimeoutMs: 5_000,
          attemptTimeoutMs: 1_000,
        });
        complete("ok", { sessionId: this.#client.sessionId });
        return this.#client;
      } catch (error) {
        complete("info", { error });
        await sleep(200, this.#stop);
      }
    }
    return null;
  }

  async #closeClient(): Promise<void> {
    const client = this.#client;
    if (client === null) return;
    this.#client = null;
    const complete = this.#invoke("close", {});
    try {
      await client.close();
      complete("ok");
    } catch (error) {
      complete("info", { error });
    }
  }

  async #iteration(client: DlockClient): Promise<void> {
    const lock = this.#random.pick(this.#options.locks);
    const handle = await this.#acquire(client, lock);
    if (handle === null) return;
    handle.signal.addEventListener("abort", () => {
      this.#history.write({
        type: "lost",
        process: this.#options.name,
        timeMs: nowMs(),
        lock,
        token: handle.token,
      });
    }, { once: true });
    const appends = this.#random.int(1, 3);
    for (let index = 0; index < appends; index += 1) {
      const direct = this.#random.chance(0.3);
      await this.#append(handle, direct);
      if (this.#random.chance(0.3)) await sleep(this.#sleepInsideMs(), this.#stop);
    }
    await this.#release(handle);
  }

  #sleepInsideMs(): number {
    return this.#random.chance(0.1) ? this.#random.int(500, 1_500) : this.#random.int(0, 200);
  }

  async #acquire(client: DlockClient, lock: string): Promise<LockHandle | null> {
    const timeoutMs = this.#random.chance(0.8) ? this.#random.int(1_000, 6_000) : 0;
    const complete = this.#invoke("acquire", { lock });
    try {
      const handle = await client.acquire(lock, {
        ...(timeoutMs > 0 ? { timeoutMs } : {}),
        signal: this.#stop,
      });
      complete("ok", { token: handle.token });
      return handle;
    } catch (error) {
      const definite = error instanceof TimeoutError || error instanceof SessionExpiredError;
      complete(definite ? "fail" : "info", { error });
      if (!definite) await this.#closeClient();
      return null;
    }
  }

  async #append(handle: LockHandle, direct: boolean): Promise<void> {
    const seq = ++this.#seq;
    const record = formatRecord(this.#options.name, handle.token, seq);
    const file = fileOfLock(handle.name);
    const alreadyLost = handle.signal.aborted || handle.released;
    const complete = this.#invoke("append", {
      lock: handle.name,
      token: handle.token,
      file,
      record,
      path: direct ? "direct" : "service",
      leaseValid: !handle.signal.aborted,
    });
    const data = `${record}\n`;
    const requestId = `${this.#options.name}-${seq}`;
    try {
      if (direct) {
        const result = await this.#files.append({
          file,
          lock: handle.name,
          token: handle.token,
          requestId,
          data,
        });
        complete("ok", { duplicate: result.duplicate });
      } else {
        const result = await handle.append(file, data, { requestId });
        complete("ok", { duplicate: result.duplicate });
      }
    } catch (error) {
      const definite = error instanceof StaleFenceError ||
        (!direct && alreadyLost && error instanceof NotHolderError);
      complete(definite ? "fail" : "info", { error });
    }
  }

  async #release(handle: LockHandle): Promise<void> {
    const complete = this.#invoke("release", {
      lock: handle.name,
      token: handle.token,
      leaseValid: !handle.signal.aborted,
    });
    try {
      await handle.release();
      complete("ok");
    } catch (error) {
      if (error instanceof NotHolderError) {
        complete("fail", { error });
      } else {
        complete("info", { error });
        await this.#closeClient();
      }
    }
  }
}

function describeError(error: unknown): string {
  if (error instanceof Error) return `${error.name}: ${error.message}`.slice(0, 500);
  return String(error).slice(0, 500);
}

function sleep(milliseconds: number, signal: AbortSignal): Promise<void> {
  if (milliseconds <= 0 || signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(done, milliseconds);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}

if (import.meta.main) {
  const options = parseOptions(Deno.args);
  const stop = new AbortController();
  const stopOnSignal = () => stop.abort();
  Deno.addSignalListener("SIGTERM", stopOnSignal);
  // Stop a little after the deadline even when an operation hangs.
  const deadlineTimer = setTimeout(
    () => stop.abort(),
    Math.max(0, options.deadlineMs - nowMs()),
  );
  const worker = new Worker(options, stop.signal);
  await worker.run();
  clearTimeout(deadlineTimer);
  Deno.removeSignalListener("SIGTERM", stopOnSignal);
  Deno.exit(0);
}

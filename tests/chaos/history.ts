/**
 * The chaos history: what every worker and the nemesis did, one JSON object per line.
 *
 * Each worker writes its own file (`history-<worker>.jsonl`) with a synchronous write per
 * event, so a `kill -9` of a worker loses at most the event being written. The harness
 * merges the files at the end and hands the events to the checker.
 *
 * An operation is an `invoke` event followed by at most one completion with the same
 * `(process, opId)`: `ok` (it happened), `fail` (it certainly did not happen) or `info`
 * (unknown outcome: it may or may not have happened, as Jepsen calls it). An operation
 * without a completion is treated as `info`.
 *
 * @module
 */

/** Operations a worker performs. */
export type OpKind = "connect" | "acquire" | "append" | "release" | "close";

/** How an append travelled: through the lock service or straight to the filewriter. */
export type AppendPath = "service" | "direct";

/** Completion types. */
export type Outcome = "ok" | "fail" | "info";

/** The start of an operation. */
export type InvokeEvent = {
  type: "invoke";
  process: string;
  opId: number;
  op: OpKind;
  /** Wall-clock time in milliseconds (`Date.now()`), shared by every process on the host. */
  timeMs: number;
  lock?: string;
  /** The grant's token, for appends and releases. */
  token?: number;
  file?: string;
  /** The exact record appended (without the trailing newline). */
  record?: string;
  path?: AppendPath;
  /**
   * For appends and releases: whether the lock handle's signal was still not aborted
   * when the operation began, that is, whether the client library told the worker it
   * still held the lock.
   */
  leaseValid?: boolean;
};

/** The end of an operation. */
export type CompleteEvent = {
  type: Outcome;
  process: string;
  opId: number;
  op: OpKind;
  timeMs: number;
  /** The granted token, for an acquire that completed ok. */
  token?: number;
  /** Error name and message, for fail and info. */
  error?: string;
  /** Session id, for a connect that completed ok. */
  sessionId?: number;
  duplicate?: boolean;
};

/** A worker noticed that its lock handle's signal aborted (lock known or suspected lost). */
export type LostEvent = {
  type: "lost";
  process: string;
  timeMs: number;
  lock: string;
  token: number;
};

/** Kinds of fault the nemesis injects. */
export type FaultKind =
  | "kill"
  | "pause"
  | "partition"
  | "partition-oneway"
  | "isolate-leader"
  | "client-pause"
  | "filewriter-kill"
  | "restart-all";

/** The nemesis started or ended a fault. */
export type NemesisEvent = {
  type: "nemesis";
  process: "nemesis";
  timeMs: number;
  /** Numbers the faults of a run; the start and end of one fault share it. */
  faultId: number;
  fault: FaultKind;
  phase: "start" | "end";
  /** Human-readable target: server addresses, worker name, partition sides. */
  target: string;
  /** True when the fault hit the server that was the leader when it started. */
  hitLeader?: boolean;
};

/** Phases of the run the harness marks in the history. */
export type PhaseEvent = {
  type: "phase";
  process: "harness";
  timeMs: number;
  phase: "start" | "faults-end" | "quiet-start" | "end";
};

/** Any line of a history file. */
export type HistoryEvent = InvokeEvent | CompleteEvent | LostEvent | NemesisEvent | PhaseEvent;

/** One operation: an invocation joined with its completion. */
export type Operation = {
  process: string;
  opId: number;
  op: OpKind;
  invokeMs: number;
  /** Completion time; `Infinity` when the operation never completed. */
  completeMs: number;
  outcome: Outcome;
  lock?: string;
  /** For acquire: the granted token (ok only). For append/release: the grant's token. */
  token?: number;
  file?: string;
  record?: string;
  path?: AppendPath;
  leaseValid?: boolean;
  error?: string;
  duplicate?: boolean;
};

const outcomes: ReadonlySet<string> = new Set(["ok", "fail", "info"]);

/** True when `event` completes an operation. */
export function isCompletion(event: HistoryEvent): event is CompleteEvent {
  return outcomes.has(event.type);
}

/**
 * Joins invocations with their completions. An invocation without a completion becomes an
 * `info` operation that completes at `Infinity` (it may take effect at any later time).
 * @throws {Error} when a completion has no invocation or an id repeats (a harness bug).
 */
export function pairOperations(events: readonly HistoryEvent[]): Operation[] {
  const open = new Map<string, Operation>();
  const operations: Operation[] = [];
  for (const event of events) {
    if (event.type === "invoke") {
      const key = `${event.process}#${event.opId}`;
      if (open.has(key)) throw new Error(`Cannot pair the history as op ${key} is invoked twice`);
      const operation: Operation = {
        process: event.process,
        opId: event.opId,
        op: event.op,
        invokeMs: event.timeMs,
        completeMs: Infinity,
        outcome: "info",
      };
      copyDefined(operation, event);
      open.set(key, operation);
      operations.push(operation);
    } else if (isCompletion(event)) {
      const key = `${event.process}#${event.opId}`;
      const operation = open.get(key);
      if (operation === undefined) {
        throw new Error(`Cannot pair the history as op ${key} completes without an invocation`);
      }
      open.delete(key);
      operation.completeMs = event.timeMs;
      operation.outcome = event.type;
      if (event.token !== undefined && operation.op === "acquire") operation.token = event.token;
      if (event.error !== undefined) operation.error = event.error;
      if (event.duplicate !== undefined) operation.duplicate = event.duplicate;
    }
  }
  return operations;
}

function copyDefined(operation: Operation, event: InvokeEvent): void {
  if (event.lock !== undefined) operation.lock = event.lock;
  if (event.token !== undefined) operation.token = event.token;
  if (event.file !== undefined) operation.file = event.file;
  if (event.record !== undefined) operation.record = event.record;
  if (event.path !== undefined) operation.path = event.path;
  if (event.leaseValid !== undefined) operation.leaseValid = event.leaseValid;
}

/** Sorts events by time; ties keep their input order (Array.prototype.sort is stable). */
export function sortEvents(events: HistoryEvent[]): HistoryEvent[] {
  return events.sort((a, b) => a.timeMs - b.timeMs);
}

/**
 * Parses JSON-lines text. A torn last line (a worker killed mid-write) is dropped; a torn
 * line elsewhere is an error.
 * @throws {Error} when a line other than the last is not a JSON object.
 */
export function parseHistory(text: string, source: string): HistoryEvent[] {
  const lines = text.split("\n");
  const events: HistoryEvent[] = [];
  for (let index = 0; index < lines.length; index += 1) {
    const line = lines[index]?.trim() ?? "";
    if (line === "") continue;
    try {
      events.push(JSON.parse(line) as HistoryEvent);
    } catch (error) {
      if (index === lines.length - 1) break;
      throw new Error(`Cannot parse ${source} as line ${index + 1} is not JSON: ${line}`, {
        cause: error,
      });
    }
  }
  return events;
}

/**
 * Current wall-clock time in milliseconds, comparable across processes on one host: every
 * call reads the same kernel clock (a per-process `performance.timeOrigin` would drift apart
 * between processes started at different times if the clock is slewed).
 */
export function nowMs(): number {
  return Date.now();
}

/**
 * Appends events to a JSON-lines file with one synchronous write each, so a killed
 * process leaves every completed line on disk.
 */
export class HistoryWriter {
  readonly #file: Deno.FsFile;
  readonly #encoder = new TextEncoder();

  private constructor(file: Deno.FsFile) {
    this.#file = file;
  }

  /** Opens (creating or appending to) `path`. */
  static open(path: string): HistoryWriter {
    return new HistoryWriter(Deno.openSync(path, { create: true, append: true }));
  }

  /** Writes one event. */
  write(event: HistoryEvent): void {
    const bytes = this.#encoder.encode(JSON.stringify(event) + "\n");
    let written = 0;
    while (written < bytes.length) written += this.#file.writeSync(bytes.subarray(written));
  }

  /** Closes the file. */
  close(): void {
    this.#file.close();
  }
}

/** Reads and merges every `history-*.jsonl` file in `directory`, sorted by time. */
export async function readHistories(directory: string): Promise<HistoryEvent[]> {
  const events: HistoryEvent[] = [];
  for await (const entry of Deno.readDir(directory)) {
    if (!entry.isFile || !/^history-.*\.jsonl$/.test(entry.name)) continue;
    const path = `${directory}/${entry.name}`;
    events.push(...parseHistory(await Deno.readTextFile(path), path));
  }
  return sortEvents(events);
}

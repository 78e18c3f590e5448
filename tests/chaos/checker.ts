/**
 * The chaos checker: pure functions over a history and the files the filewriter holds.
 *
 * Safety properties (each failure is a {@link Violation}):
 * - `corrupt-file`: a file holds a line that is not a `client/token/seq` record.
 * - `token-decrease`: per file, accepted tokens never decrease in file order.
 * - `interleave`: per file, the records of one token come from one client and form one
 *   contiguous run (no other token's record inside a token's critical section).
 * - `lost-append`: an acknowledged append is missing; `duplicate-append`: a record appears
 *   more than once (acknowledged: exactly once; unknown outcome: at most once);
 *   `failed-append-applied`: an append reported as a definite failure is in the file;
 *   `phantom-record`: a record nobody appended.
 * - `append-order`: an append acknowledged before another was invoked comes after it in
 *   the file (the file is not a linearizable log).
 * - `record-without-grant`: a client's record carries a token that the history does not
 *   show that client holding on that file's lock; `record-outside-hold`: its append was
 *   invoked before the acquire or after a successful release of that grant.
 * - `grant-order`: a successful acquire got a token not above a grant on the same lock
 *   that completed before it was invoked; `global-token-order`: the same across all locks;
 *   `duplicate-token`: two clients got the same token.
 * - `two-holders`: a release with token T succeeded although, before it was invoked, a
 *   grant with a higher token on the same lock had completed (the server had two holders).
 * - `stale-holder-append`: an append through the lock service with token T was
 *   acknowledged although a higher grant on that lock had completed before it was invoked
 *   (the leader's holder check was not linearizable).
 * - `lease-overlap`: a client used a grant (append or release) while its lock handle's
 *   signal said the lock was still held, although a higher grant on that lock had already
 *   completed for another client: the library's lease promise ("the signal aborts when
 *   the lock is known or presumed lost") was broken, for example by a session expired
 *   early or a keepalive confirmed by a deposed leader. Operations logged during a
 *   nemesis pause of that client or within `leaseGraceMs` after it are exempt (a stopped
 *   process cannot notice anything; that is what fencing is for).
 *
 * Time comparisons use `Date.now()` of different processes on one host; an event counts as
 * "before" another only when its time is smaller by more than `clockToleranceMs`.
 *
 * @module
 */
import { type HistoryEvent, type Operation, pairOperations } from "./history.ts";

/** The kinds of safety violation the checker reports. */
export type ViolationKind =
  | "corrupt-file"
  | "token-decrease"
  | "interleave"
  | "lost-append"
  | "duplicate-append"
  | "failed-append-applied"
  | "phantom-record"
  | "append-order"
  | "record-without-grant"
  | "record-outside-hold"
  | "grant-order"
  | "global-token-order"
  | "duplicate-token"
  | "two-holders"
  | "stale-holder-append"
  | "lease-overlap";

/** One violation with a minimal description of what went wrong. */
export type Violation = {
  kind: ViolationKind;
  message: string;
  /** The operations involved (for the violation report). */
  operations: Operation[];
};

/** One parsed line of a chaos file. */
export type FileRecord = {
  /** The line without its newline. */
  raw: string;
  client: string;
  token: number;
  seq: number;
  /** Zero-based line number in the file. */
  line: number;
};

/** What the checker needs besides the history. */
export type CheckInput = {
  events: readonly HistoryEvent[];
  /** File name to full content, as read from the filewriter at the end. */
  files: ReadonlyMap<string, string>;
  /** File name to the lock that fences it (one file per lock). */
  lockOfFile: ReadonlyMap<string, string>;
  clockToleranceMs?: number;
  /** Exemption after a client pause ends (default 1000 ms); see `lease-overlap`. */
  leaseGraceMs?: number;
};

/** The checker's verdict. */
export type CheckResult = {
  violations: Violation[];
  operations: Operation[];
  records: number;
};

const recordPattern = /^([A-Za-z0-9_-]+)\/(\d+)\/(\d+)$/;

/** Parses a file into records; lines that are not records are returned separately. */
export function parseFile(content: string): { records: FileRecord[]; garbage: string[] } {
  const records: FileRecord[] = [];
  const garbage: string[] = [];
  const lines = content.split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  lines.forEach((raw, line) => {
    const match = recordPattern.exec(raw);
    if (match === null) {
      garbage.push(`line ${line + 1}: ${JSON.stringify(raw.slice(0, 80))}`);
      return;
    }
    records.push({
      raw,
      client: match[1] ?? "",
      token: Number(match[2]),
      seq: Number(match[3]),
      line,
    });
  });
  return { records, garbage };
}

/** Formats the record that an append writes (without the newline). */
export function formatRecord(client: string, token: number, seq: number): string {
  return `${client}/${token}/${seq}`;
}

/** Runs every safety check. */
export function check(input: CheckInput): CheckResult {
  const toleranceMs = input.clockToleranceMs ?? 1;
  const operations = pairOperations(input.events);
  const violations: Violation[] = [];
  const parsed = new Map<string, FileRecord[]>();
  let recordCount = 0;
  for (const [file, content] of input.files) {
    const { records, garbage } = parseFile(content);
    recordCount += records.length;
    if (garbage.length > 0) {
      violations.push({
        kind: "corrupt-file",
        message: `file ${file} holds ${garbage.length} line(s) that are not records, first ${
          garbage[0]
        }`,
        operations: [],
      });
    }
    parsed.set(file, records);
    violations.push(...checkTokenOrder(file, records), ...checkInterleave(file, records));
  }
  violations.push(
    ...checkAppendsPresence(operations, parsed),
    ...checkAppendOrder(operations, parsed, toleranceMs),
    ...checkRecordsHaveGrants(operations, parsed, input.lockOfFile),
    ...checkGrantOrder(operations, toleranceMs),
    ...checkStaleHolders(operations, toleranceMs),
    ...checkLeases(
      operations,
      clientPauses(input.events),
      toleranceMs,
      input.leaseGraceMs ?? 1_000,
    ),
  );
  return { violations, operations, records: recordCount };
}

/** Per file, tokens never decrease in file order. */
export function checkTokenOrder(file: string, records: readonly FileRecord[]): Violation[] {
  const violations: Violation[] = [];
  let highest: FileRecord | null = null;
  for (const record of records) {
    if (highest !== null && record.token < highest.token) {
      violations.push({
        kind: "token-decrease",
        message: `file ${file}: record ${record.raw} (token ${record.token}) at line ${
          record.line + 1
        } comes after record ${highest.raw} (token ${highest.token}) at line ${
          highest.line + 1
        }: the filewriter accepted a stale token`,
        operations: [],
      });
    }
    if (highest === null || record.token > highest.token) highest = record;
  }
  return violations;
}

/** Per file, one token's records come from one client and are contiguous. */
export function checkInterleave(file: string, records: readonly FileRecord[]): Violation[] {
  const violations: Violation[] = [];
  const ownerOfToken = new Map<number, FileRecord>();
  const closedTokens = new Set<number>();
  let previous: FileRecord | null = null;
  for (const record of records) {
    const owner = ownerOfToken.get(record.token);
    if (owner !== undefined && owner.client !== record.client) {
      violations.push({
        kind: "interleave",
        message:
          `file ${file}: token ${record.token} has records from two clients: ${owner.raw} (line ${
            owner.line + 1
          }) and ${record.raw} (line ${record.line + 1})`,
        operations: [],
      });
    }
    if (owner === undefined) ownerOfToken.set(record.token, record);
    if (previous !== null && previous.token !== record.token) {
      closedTokens.add(previous.token);
      if (closedTokens.has(record.token)) {
        violations.push({
          kind: "interleave",
          message:
            `file ${file}: the critical section of token ${record.token} is interleaved: ${record.raw} at line ${
              record.line + 1
            } follows ${previous.raw} (token ${previous.token}) after earlier records of token ${record.token}`,
          operations: [],
        });
      }
    }
    previous = record;
  }
  return violations;
}

type Placement = { file: string; line: number };

function placeRecords(parsed: ReadonlyMap<string, FileRecord[]>): Map<string, Placement[]> {
  const placements = new Map<string, Placement[]>();
  for (const [file, records] of parsed) {
    for (const record of records) {
      const list = placements.get(record.raw) ?? [];
      list.push({ file, line: record.line });
      placements.set(record.raw, list);
    }
  }
  return placements;
}

function describePlacements(placements: readonly Placement[]): string {
  return placements.map((p) => `${p.file}:${p.line + 1}`).join(", ");
}

/** Acknowledged appends exactly once, unknown at most once, failed never, no phantoms. */
export function checkAppendsPresence(
  operations: readonly Operation[],
  parsed: ReadonlyMap<string, FileRecord[]>,
): Violation[] {
  const violations: Violation[] = [];
  const placements = placeRecords(parsed);
  const appended = new Set<string>();
  for (const operation of operations) {
    if (operation.op !== "append" || operation.record === undefined) continue;
    appended.add(operation.record);
    const found = placements.get(operation.record) ?? [];
    const where = describePlacements(found);
    const what = `${operation.path ?? "?"} append of ${operation.record} by ${operation.process}`;
    if (operation.outcome === "ok" && found.length === 0) {
      violations.push({
        kind: "lost-append",
        message: `${what} was acknowledged but is not in ${operation.file ?? "its file"}`,
        operations: [operation],
      });
    } else if (found.length > 1) {
      violations.push({
        kind: "duplicate-append",
        message: `${what} (outcome ${operation.outcome}) appears ${found.length} times: ${where}`,
        operations: [operation],
      });
    } else if (operation.outcome === "fail" && found.length > 0) {
      violations.push({
        kind: "failed-append-applied",
        message: `${what} failed with ${
          operation.error ?? "an error"
        } but is in the file at ${where}`,
        operations: [operation],
      });
    }
    if (found.some((p) => p.file !== operation.file)) {
      violations.push({
        kind: "phantom-record",
        message: `${what} was sent to ${operation.file} but appears at ${where}`,
        operations: [operation],
      });
    }
  }
  for (const [raw, found] of placements) {
    if (!appended.has(raw)) {
      violations.push({
        kind: "phantom-record",
        message: `record ${raw} at ${describePlacements(found)} was never appended by anyone`,
        operations: [],
      });
    }
  }
  return violations;
}

/**
 * Per file: if append a was acknowledged before append b was invoked and both are present,
 * a precedes b. One backward scan keeping the earliest completion among later records.
 */
export function checkAppendOrder(
  operations: readonly Operation[],
  parsed: ReadonlyMap<string, FileRecord[]>,
  toleranceMs: number,
): Violation[] {
  const violations: Violation[] = [];
  const byRecord = new Map<string, Operation>();
  for (const operation of operations) {
    if (operation.op === "append" && operation.record !== undefined) {
      byRecord.set(operation.record, operation);
    }
  }
  for (const [file, records] of parsed) {
    let earliestLater: Operation | null = null;
    for (let index = records.length - 1; index >= 0; index -= 1) {
      const record = records[index];
      const operation = record === undefined ? undefined : byRecord.get(record.raw);
      if (record === undefined || operation === undefined) continue;
      if (earliestLater !== null && earliestLater.completeMs + toleranceMs < operation.invokeMs) {
        violations.push({
          kind: "append-order",
          message:
            `file ${file}: ${earliestLater.record} was acknowledged at ${earliestLater.completeMs}, before ${record.raw} was invoked at ${operation.invokeMs}, yet comes after it`,
          operations: [earliestLater, operation],
        });
      }
      if (
        operation.outcome === "ok" &&
        (earliestLater === null || operation.completeMs < earliestLater.completeMs)
      ) {
        earliestLater = operation;
      }
    }
  }
  return violations;
}

type Hold = { acquire: Operation; release: Operation | null };

/** Each ok grant with the ok release of the same grant (if any), keyed client/lock/token. */
function holds(operations: readonly Operation[]): Map<string, Hold> {
  const byKey = new Map<string, Hold>();
  for (const operation of operations) {
    if (operation.outcome !== "ok") continue;
    const key = `${operation.process}/${operation.lock}/${operation.token}`;
    if (operation.op === "acquire" && !byKey.has(key)) {
      byKey.set(key, { acquire: operation, release: null });
    } else if (operation.op === "release") {
      const hold = byKey.get(key);
      if (hold !== undefined && hold.release === null) hold.release = operation;
    }
  }
  return byKey;
}

/**
 * Every record's (client, token) was granted to that client on the file's lock, and the
 * record's append was invoked while the history says the client held (or possibly held)
 * that grant: after the acquire was invoked and before a successful release completed.
 */
export function checkRecordsHaveGrants(
  operations: readonly Operation[],
  parsed: ReadonlyMap<string, FileRecord[]>,
  lockOfFile: ReadonlyMap<string, string>,
): Violation[] {
  const grants = holds(operations);
  const appendOf = new Map<string, Operation>();
  for (const operation of operations) {
    if (operation.op === "append" && operation.record !== undefined) {
      appendOf.set(operation.record, operation);
    }
  }
  const violations: Violation[] = [];
  for (const [file, records] of parsed) {
    const lock = lockOfFile.get(file);
    for (const record of records) {
      const hold = grants.get(`${record.client}/${lock}/${record.token}`);
      if (hold === undefined) {
        violations.push({
          kind: "record-without-grant",
          message: `file ${file}: record ${record.raw} at line ${
            record.line + 1
          } carries token ${record.token}, which ${record.client} never acquired on lock ${lock}`,
          operations: [],
        });
        continue;
      }
      const append = appendOf.get(record.raw);
      if (append === undefined) continue; // reported as a phantom record
      const releasedMs = hold.release?.completeMs ?? Infinity;
      if (append.invokeMs < hold.acquire.invokeMs || append.invokeMs > releasedMs) {
        violations.push({
          kind: "record-outside-hold",
          message:
            `file ${file}: ${record.client} appended ${record.raw} at ${append.invokeMs}, outside its hold of token ${record.token} on ${lock} (acquire invoked at ${hold.acquire.invokeMs}, released at ${releasedMs})`,
          operations: [hold.acquire, append, ...(hold.release === null ? [] : [hold.release])],
        });
      }
    }
  }
  return violations;
}

/**
 * Completed ok grants sorted by completion time, with a prefix maximum of their tokens, so
 * that "the highest token granted before time t" is one binary search.
 */
export class GrantIndex {
  readonly #grants: Operation[];
  readonly #prefixMax: Operation[];

  constructor(grants: readonly Operation[]) {
    this.#grants = [...grants].sort((a, b) => a.completeMs - b.completeMs);
    this.#prefixMax = [];
    let best: Operation | null = null;
    for (const grant of this.#grants) {
      if (best === null || (grant.token ?? 0) > (best.token ?? 0)) best = grant;
      this.#prefixMax.push(best);
    }
  }

  /** The grant with the highest token among those completed strictly before `timeMs`. */
  highestBefore(timeMs: number): Operation | null {
    let low = 0;
    let high = this.#grants.length;
    while (low < high) {
      const middle = (low + high) >> 1;
      if ((this.#grants[middle]?.completeMs ?? Infinity) < timeMs) low = middle + 1;
      else high = middle;
    }
    return low === 0 ? null : this.#prefixMax[low - 1] ?? null;
  }
}

function okGrantsByLock(operations: readonly Operation[]): Map<string, Operation[]> {
  const byLock = new Map<string, Operation[]>();
  for (const operation of operations) {
    if (operation.op !== "acquire" || operation.outcome !== "ok") continue;
    const lock = operation.lock ?? "";
    const list = byLock.get(lock) ?? [];
    list.push(operation);
    byLock.set(lock, list);
  }
  return byLock;
}

function describeGrant(grant: Operation): string {
  return `${grant.process} got token ${grant.token} on ${grant.lock} at ${grant.completeMs}`;
}

/** Per lock and globally, a grant's token exceeds every grant completed before it began. */
export function checkGrantOrder(
  operations: readonly Operation[],
  toleranceMs: number,
): Violation[] {
  const violations: Violation[] = [];
  const byLock = okGrantsByLock(operations);
  const all = [...byLock.values()].flat();
  const globalIndex = new GrantIndex(all);
  for (const [lock, grants] of byLock) {
    const index = new GrantIndex(grants);
    for (const grant of grants) {
      const token = grant.token ?? 0;
      const earlier = index.highestBefore(grant.invokeMs - toleranceMs);
      if (earlier !== null && (earlier.token ?? 0) >= token && !isRegrant(earlier, grant)) {
        violations.push({
          kind: "grant-order",
          message:
            `lock ${lock}: ${grant.process} was granted token ${token} (acquire invoked at ${grant.invokeMs}) although ${
              describeGrant(earlier)
            }, earlier`,
          operations: [earlier, grant],
        });
        continue;
      }
      const globalEarlier = globalIndex.highestBefore(grant.invokeMs - toleranceMs);
      if (
        globalEarlier !== null && (globalEarlier.token ?? 0) >= token &&
        !isRegrant(globalEarlier, grant)
      ) {
        violations.push({
          kind: "global-token-order",
          message:
            `${grant.process} was granted token ${token} on ${lock} (acquire invoked at ${grant.invokeMs}) although ${
              describeGrant(globalEarlier)
            }, earlier: tokens are not increasing across locks`,
          operations: [globalEarlier, grant],
        });
      }
    }
  }
  violations.push(...checkDuplicateTokens(all));
  return violations;
}

/** A session asking again for a lock it holds gets the same grant back. */
function isRegrant(earlier: Operation, grant: Operation): boolean {
  return earlier.process === grant.process && earlier.lock === grant.lock &&
    earlier.token === grant.token;
}

function checkDuplicateTokens(grants: readonly Operation[]): Violation[] {
  const violations: Violation[] = [];
  const byToken = new Map<number, Operation>();
  for (const grant of grants) {
    const token = grant.token ?? 0;
    const other = byToken.get(token);
    if (other === undefined) {
      byToken.set(token, grant);
    } else if (other.process !== grant.process || other.lock !== grant.lock) {
      violations.push({
        kind: "duplicate-token",
        message: `token ${token} was granted twice: ${describeGrant(other)} and ${
          describeGrant(grant)
        }`,
        operations: [other, grant],
      });
    }
  }
  return violations;
}

/**
 * A successful release or service append with token T on lock L must not begin after a
 * grant of a higher token on L completed: at that point the server had moved on.
 */
export function checkStaleHolders(
  operations: readonly Operation[],
  toleranceMs: number,
): Violation[] {
  const violations: Violation[] = [];
  const indexes = new Map<string, GrantIndex>();
  for (const [lock, grants] of okGrantsByLock(operations)) {
    indexes.set(lock, new GrantIndex(grants));
  }
  for (const operation of operations) {
    if (operation.outcome !== "ok" || operation.token === undefined) continue;
    const isRelease = operation.op === "release";
    const isServiceAppend = operation.op === "append" && operation.path === "service";
    if (!isRelease && !isServiceAppend) continue;
    const later = indexes.get(operation.lock ?? "")?.highestBefore(
      operation.invokeMs - toleranceMs,
    );
    if (later === null || later === undefined || (later.token ?? 0) <= operation.token) continue;
    const what = isRelease ? "released" : `appended ${operation.record} through the service`;
    violations.push({
      kind: isRelease ? "two-holders" : "stale-holder-append",
      message:
        `lock ${operation.lock}: ${operation.process} ${what} with token ${operation.token} (invoked at ${operation.invokeMs}, ok at ${operation.completeMs}) although ${
          describeGrant(later)
        }, before: the server still treated a replaced grant as the holder`,
      operations: [later, operation],
    });
  }
  return violations;
}

/** Each worker's nemesis pauses as [start, end] intervals (end: when it was resumed). */
export function clientPauses(events: readonly HistoryEvent[]): Map<string, [number, number][]> {
  const starts = new Map<number, number>();
  const pauses = new Map<string, [number, number][]>();
  for (const event of events) {
    if (event.type !== "nemesis" || event.fault !== "client-pause") continue;
    if (event.phase === "start") {
      starts.set(event.faultId, event.timeMs);
      continue;
    }
    const list = pauses.get(event.target) ?? [];
    list.push([starts.get(event.faultId) ?? event.timeMs, event.timeMs]);
    pauses.set(event.target, list);
  }
  return pauses;
}

/** See `lease-overlap` in the module documentation. */
export function checkLeases(
  operations: readonly Operation[],
  pauses: ReadonlyMap<string, readonly (readonly [number, number])[]>,
  toleranceMs: number,
  graceMs: number,
): Violation[] {
  const violations: Violation[] = [];
  const indexes = new Map<string, GrantIndex>();
  for (const [lock, grants] of okGrantsByLock(operations)) {
    indexes.set(lock, new GrantIndex(grants));
  }
  for (const operation of operations) {
    if (operation.leaseValid !== true || operation.token === undefined) continue;
    if (operation.op !== "append" && operation.op !== "release") continue;
    const later = indexes.get(operation.lock ?? "")?.highestBefore(
      operation.invokeMs - toleranceMs,
    );
    if (later === null || later === undefined || (later.token ?? 0) <= operation.token) continue;
    // Logged by a process that the nemesis had stopped, or had resumed less than graceMs
    // ago (the resume is logged around the same instant as the worker's first step).
    const justResumed = (pauses.get(operation.process) ?? []).some(([startMs, endMs]) =>
      operation.invokeMs >= startMs && operation.invokeMs < endMs + graceMs
    );
    if (justResumed) continue;
    violations.push({
      kind: "lease-overlap",
      message:
        `lock ${operation.lock}: ${operation.process} began a ${operation.op} with token ${operation.token} at ${operation.invokeMs} while its lock handle still reported the lock held, although ${
          describeGrant(later)
        }: the client's lease outlived the session on the server`,
      operations: [later, operation],
    });
  }
  return violations;
}

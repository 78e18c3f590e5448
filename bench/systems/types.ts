/**
 * The common driver interface every benchmarked lock service implements, so the
 * scenarios run the same code against dlock, etcd and ZooKeeper.
 *
 * @module
 */
import {
  killProcess,
  type ManagedProcess,
  readCpuSeconds,
  readPeakRssBytes,
  readRssBytes,
} from "../process.ts";

/** The systems the bench knows. */
export type SystemName = "dlock" | "etcd" | "zookeeper";

/** All system names, in report order. */
export const systemNames: readonly SystemName[] = ["dlock", "etcd", "zookeeper"];

/** A granted lock. */
export interface HeldLock {
  /** Fencing token or the system's nearest equivalent (revision, sequence number). */
  readonly token: string;
  /** Releases the lock. Safe to retry after an error. */
  release(): Promise<void>;
}

/** One client session (dlock session, etcd lease, ZooKeeper session). */
export interface LockSession {
  /** Blocks until `name` is granted; rejects after `timeoutMs` or on failure. */
  acquire(name: string, timeoutMs: number): Promise<HeldLock>;
  /** Ends the session; its locks are released. Bounded in time, never throws. */
  close(): Promise<void>;
}

/** A lock service cluster the bench can start, connect to, and break. */
export interface SystemDriver {
  readonly name: SystemName;
  /** Number of members (3). */
  readonly memberCount: number;
  /** False when the cluster is external (`--servers`): no kills, no RSS. */
  readonly managed: boolean;
  /** Null when the system can run here; otherwise why not (e.g. "etcd is not installed"). */
  unavailableReason(): Promise<string | null>;
  /** A one-line version string for the report. */
  version(): Promise<string>;
  /** Starts the members in fresh temp dirs and waits until the cluster serves. */
  start(): Promise<void>;
  /** Kills every member and removes the temp dirs. Never throws. */
  stop(): Promise<void>;
  /** Opens a session named after `clientId`. */
  connect(clientId: string): Promise<LockSession>;
  /** Index (0-based) of the current leader; waits for one up to `timeoutMs`. */
  leaderIndex(timeoutMs: number): Promise<number>;
  /**
   * Waits until every member is healthy and a leader serves; throws at once when a
   * member of a cluster we started is not running (crashed).
   */
  waitHealthy(timeoutMs: number): Promise<void>;
  /** `kill -9` of member `index`. */
  killMember(index: number): Promise<void>;
  /** Starts member `index` again on its data dir (does not wait for health). */
  restartMember(index: number): void;
  /** Pids of the members (null when not running or external). */
  memberPids(): (number | null)[];
  /** Each member's state and log tail, for error reports ("" when external). */
  diagnostics(): Promise<string>;
}

/** Bookkeeping shared by the drivers that run their members as local processes. */
export class MemberProcesses {
  readonly #spawn: (index: number) => ManagedProcess;
  readonly #members: (ManagedProcess | null)[];
  /** The most recent process of each member, kept after it is killed (for its log). */
  readonly #lastStarted: (ManagedProcess | null)[];

  /** `spawn(index)` starts member `index` (the same way on first start and on restart). */
  constructor(count: number, spawn: (index: number) => ManagedProcess) {
    this.#spawn = spawn;
    this.#members = Array.from({ length: count }, () => null);
    this.#lastStarted = Array.from({ length: count }, () => null);
  }

  /** Starts member `index` unless it runs. */
  start(index: number): void {
    const current = this.#members[index];
    if (current !== undefined && current !== null && !current.hasExited()) return;
    const member = this.#spawn(index);
    this.#members[index] = member;
    this.#lastStarted[index] = member;
  }

  /** Starts every member. */
  startAll(): void {
    for (let index = 0; index < this.#members.length; index++) this.start(index);
  }

  /** SIGKILLs member `index` and waits for it to exit. */
  async kill(index: number): Promise<void> {
    const member = this.#members[index];
    if (member === undefined || member === null) return;
    await killProcess(member, "SIGKILL");
    this.#members[index] = null;
  }

  /** SIGKILLs every member. */
  async killAll(): Promise<void> {
    await Promise.all(this.#members.map((_, index) => this.kill(index)));
  }

  /** Sends SIGTERM to every member and waits (bounded) for a clean exit; then SIGKILL. */
  async terminateAll(timeoutMs: number): Promise<void> {
    await Promise.all(this.#members.map(async (member, index) => {
      if (member === null || member === undefined) return;
      await killProcess(member, "SIGTERM", timeoutMs);
      this.#members[index] = null;
    }));
  }

  /** Whether member `index` is running. */
  running(index: number): boolean {
    const member = this.#members[index];
    return member !== undefined && member !== null && !member.hasExited();
  }

  /** Pids of running members. */
  pids(): (number | null)[] {
    return this.#members.map((member) =>
      member === null || member === undefined || member.hasExited() ? null : member.pid
    );
  }

  /**
   * Throws when a member is not running (it crashed, or was killed and not restarted),
   * naming it and quoting the end of its log: a cluster short of a member must not pass
   * for healthy.
   */
  async assertAllRunning(): Promise<void> {
    for (let index = 0; index < this.#members.length; index++) {
      if (this.running(index)) continue;
      const member = this.#members[index];
      const logPath = member?.logPath ?? null;
      const status = member === null || member === undefined
        ? "not started"
        : `exited (${await member.exited.then((s) => s.signal ?? `code ${s.code}`)})`;
      const log = logPath === null ? "" : await Deno.readTextFile(logPath).catch(() => "");
      throw new Error(
        `Cannot use the cluster as member ${index} ${status}; end of its log ${logPath}:\n` +
          log.slice(-1_500),
      );
    }
  }

  /**
   * For error reports: each member's state (running, or how it exited) and the last
   * lines of its log.
   */
  async describe(linesPerMember = 6): Promise<string> {
    const parts: string[] = [];
    for (let index = 0; index < this.#members.length; index++) {
      const member = this.#members[index] ?? this.#lastStarted[index];
      if (member === undefined || member === null) {
        parts.push(`member ${index}: not started`);
        continue;
      }
      const state = member.hasExited()
        ? `exited (${await member.exited.then((s) => s.signal ?? `code ${s.code}`)})`
        : "running";
      const log = await Deno.readTextFile(member.logPath).catch(() => "");
      const tail = log.trimEnd().split("\n").slice(-linesPerMember).join("\n    ");
      parts.push(`member ${index} (pid ${member.pid}) ${state}; log tail:\n    ${tail}`);
    }
    return parts.join("\n");
  }

  /** The log file of member `index` (for error messages). */
  logPath(index: number): string | null {
    return this.#members[index]?.logPath ?? null;
  }
}

/** RSS in bytes of each member (null where not running or unknown). */
export function memberRssBytes(driver: SystemDriver): Promise<(number | null)[]> {
  return Promise.all(driver.memberPids().map((pid) => pid === null ? null : readRssBytes(pid)));
}

/** Peak RSS in bytes of each member since it started (null where not running or unknown). */
export function memberPeakRssBytes(driver: SystemDriver): Promise<(number | null)[]> {
  return Promise.all(
    driver.memberPids().map((pid) => pid === null ? null : readPeakRssBytes(pid)),
  );
}

/** CPU seconds used so far by each member (null where not running or unknown). */
export function memberCpuSeconds(driver: SystemDriver): Promise<(number | null)[]> {
  return Promise.all(driver.memberPids().map((pid) => pid === null ? null : readCpuSeconds(pid)));
}

/**
 * What every driver of a cluster the bench starts itself does the same way: kill, restart,
 * describe and list its member processes. A driver sets {@link members} in `start()` and
 * back to null in `stop()`.
 */
export abstract class ProcessClusterDriver {
  abstract readonly memberCount: number;
  /** The members' processes while the cluster runs; null before start, after stop, or external. */
  protected members: MemberProcesses | null = null;

  /** `kill -9` of member `index`. */
  async killMember(index: number): Promise<void> {
    await this.members?.kill(index);
  }

  /** Starts member `index` again on its data dir (does not wait for health). */
  restartMember(index: number): void {
    this.members?.start(index);
  }

  /** Each member's state and log tail, for error reports ("" when external). */
  diagnostics(): Promise<string> {
    return this.members?.describe() ?? Promise.resolve("");
  }

  /** Pids of the members (null when not running or external). */
  memberPids(): (number | null)[] {
    return this.members?.pids() ?? Array.from({ length: this.memberCount }, () => null);
  }
}

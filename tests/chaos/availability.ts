/**
 * Availability figures from a chaos history: operation counts, throughput during and
 * after faults, and the gap between each fault that hit the leader and the next
 * successful acquire. Pure functions.
 *
 * @module
 */
import type {
  FaultKind,
  HistoryEvent,
  NemesisEvent,
  Operation,
  OpKind,
  Outcome,
  PhaseEvent,
} from "./history.ts";

/**
 * Responses that complete within this long after a leader fault were in flight before it
 * (no new leader can be elected that fast: the election timeout is 300 ms or more), so
 * they do not count as recovery.
 */
export const inFlightMs = 50;

/** A fault that hit the leader and how long until the next successful acquire. */
export type FailoverGap = {
  faultId: number;
  fault: FaultKind;
  startMs: number;
  /** Milliseconds to the next ok acquire; `Infinity` when none came. */
  gapMs: number;
};

/** Summary statistics of a list of gaps. */
export type GapStats = { count: number; medianMs: number; maxMs: number };

/** Availability summary of a run. */
export type Availability = {
  counts: Record<OpKind, Record<Outcome, number>>;
  faultsByKind: Partial<Record<FaultKind, number>>;
  /** Ok operations per second while at least one fault was active. */
  okPerSecondDuringFaults: number;
  /** Ok operations per second in the fault phase while no fault was active. */
  okPerSecondBetweenFaults: number;
  /** Ok operations per second in the quiet period after everything healed. */
  okPerSecondQuiet: number;
  /** Lock handles whose signal aborted (lock known or presumed lost). */
  locksLost: number;
  /** Ok acquires in the quiet period (liveness must return). */
  acquiresOkQuiet: number;
  /** Seconds from the start of the quiet period to its first ok acquire (Infinity: none). */
  quietFirstAcquireMs: number;
  gaps: FailoverGap[];
  /** Gaps after kills of the leader. */
  leaderKillGaps: GapStats;
  /** Gaps after any fault that hit the leader (kill, pause, isolation, restart-all). */
  leaderFaultGaps: GapStats;
};

type Interval = { startMs: number; endMs: number };

/** Median and maximum; a list with an `Infinity` has an infinite maximum. */
export function gapStats(values: readonly number[]): GapStats {
  if (values.length === 0) return { count: 0, medianMs: 0, maxMs: 0 };
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  const median = sorted.length % 2 === 1
    ? sorted[middle] ?? 0
    : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2;
  return { count: sorted.length, medianMs: median, maxMs: sorted[sorted.length - 1] ?? 0 };
}

/** Fault intervals from nemesis start/end pairs (an unended fault lasts to `endMs`). */
export function faultIntervals(events: readonly HistoryEvent[], endMs: number): Interval[] {
  const starts = new Map<number, number>();
  const intervals: Interval[] = [];
  for (const event of events) {
    if (event.type !== "nemesis") continue;
    if (event.phase === "start") starts.set(event.faultId, event.timeMs);
    else {
      const startMs = starts.get(event.faultId);
      if (startMs !== undefined) intervals.push({ startMs, endMs: event.timeMs });
      starts.delete(event.faultId);
    }
  }
  for (const startMs of starts.values()) intervals.push({ startMs, endMs });
  return mergeIntervals(intervals);
}

/** Merges overlapping intervals. */
export function mergeIntervals(intervals: readonly Interval[]): Interval[] {
  const sorted = [...intervals].sort((a, b) => a.startMs - b.startMs);
  const merged: Interval[] = [];
  for (const interval of sorted) {
    const last = merged[merged.length - 1];
    if (last !== undefined && interval.startMs <= last.endMs) {
      last.endMs = Math.max(last.endMs, interval.endMs);
    } else merged.push({ ...interval });
  }
  return merged;
}

function insideAny(timeMs: number, intervals: readonly Interval[]): boolean {
  return intervals.some((i) => timeMs >= i.startMs && timeMs <= i.endMs);
}

function totalMs(intervals: readonly Interval[]): number {
  return intervals.reduce((sum, i) => sum + (i.endMs - i.startMs), 0);
}

function phaseTime(events: readonly HistoryEvent[], phase: PhaseEvent["phase"]): number | null {
  const event = events.find((e): e is PhaseEvent => e.type === "phase" && e.phase === phase);
  return event?.timeMs ?? null;
}

/** Gap from each leader-hitting fault to the next ok acquire completion. */
export function failoverGaps(
  events: readonly HistoryEvent[],
  operations: readonly Operation[],
): FailoverGap[] {
  const acquires = operations
    .filter((o) => o.op === "acquire" && o.outcome === "ok")
    .map((o) => o.completeMs)
    .sort((a, b) => a - b);
  const gaps: FailoverGap[] = [];
  for (const event of events) {
    if (event.type !== "nemesis" || event.phase !== "start" || event.hitLeader !== true) continue;
    const from = gapOrigin(events, event);
    const next = acquires.find((t) => t > from + inFlightMs);
    gaps.push({
      faultId: event.faultId,
      fault: event.fault,
      startMs: from,
      gapMs: next === undefined ? Infinity : next - from,
    });
  }
  return gaps;
}

/** A whole-cluster restart is measured from the restart (its end), other faults from start. */
function gapOrigin(events: readonly HistoryEvent[], start: NemesisEvent): number {
  if (start.fault !== "restart-all") return start.timeMs;
  const end = events.find((e) =>
    e.type === "nemesis" && e.phase === "end" && e.faultId === start.faultId
  );
  return end?.timeMs ?? start.timeMs;
}

function emptyCounts(): Record<OpKind, Record<Outcome, number>> {
  const kinds: OpKind[] = ["connect", "acquire", "append", "release", "close"];
  const counts = {} as Record<OpKind, Record<Outcome, number>>;
  for (const kind of kinds) counts[kind] = { ok: 0, fail: 0, info: 0 };
  return counts;
}

/** Computes the availability summary. */
export function availability(
  events: readonly HistoryEvent[],
  operations: readonly Operation[],
): Availability {
  const counts = emptyCounts();
  for (const operation of operations) counts[operation.op][operation.outcome] += 1;
  const startMs = phaseTime(events, "start") ?? (events[0]?.timeMs ?? 0);
  const faultsEndMs = phaseTime(events, "faults-end") ?? (events.at(-1)?.timeMs ?? startMs);
  const quietStartMs = phaseTime(events, "quiet-start") ?? faultsEndMs;
  const endMs = phaseTime(events, "end") ?? (events.at(-1)?.timeMs ?? quietStartMs);
  const faults = faultIntervals(events, faultsEndMs);
  const faultMs = totalMs(faults);
  const betweenMs = Math.max(0, faultsEndMs - startMs - faultMs);
  const okTimes = operations.filter((o) => o.outcome === "ok").map((o) => o.completeMs);
  const duringFaults = okTimes.filter((t) => insideAny(t, faults)).length;
  const betweenFaults =
    okTimes.filter((t) => t >= startMs && t < faultsEndMs && !insideAny(t, faults)).length;
  const quietOk = okTimes.filter((t) => t >= quietStartMs && t <= endMs).length;
  const quietAcquires = operations
    .filter((o) =>
      o.op === "acquire" && o.outcome === "ok" && o.completeMs >= quietStartMs &&
      o.completeMs <= endMs
    )
    .map((o) => o.completeMs);
  const faultsByKind: Partial<Record<FaultKind, number>> = {};
  for (const event of events) {
    if (event.type === "nemesis" && event.phase === "start") {
      faultsByKind[event.fault] = (faultsByKind[event.fault] ?? 0) + 1;
    }
  }
  const gaps = failoverGaps(events, operations);
  return {
    counts,
    faultsByKind,
    locksLost: events.filter((e) => e.type === "lost").length,
    okPerSecondDuringFaults: perSecond(duringFaults, faultMs),
    okPerSecondBetweenFaults: perSecond(betweenFaults, betweenMs),
    okPerSecondQuiet: perSecond(quietOk, endMs - quietStartMs),
    acquiresOkQuiet: quietAcquires.length,
    quietFirstAcquireMs: quietAcquires.length === 0
      ? Infinity
      : Math.min(...quietAcquires) - quietStartMs,
    gaps,
    leaderKillGaps: gapStats(gaps.filter((g) => g.fault === "kill").map((g) => g.gapMs)),
    leaderFaultGaps: gapStats(gaps.map((g) => g.gapMs)),
  };
}

function perSecond(count: number, durationMs: number): number {
  return durationMs <= 0 ? 0 : count / (durationMs / 1000);
}

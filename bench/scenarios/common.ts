/**
 * Helpers shared by the scenarios: opening and closing many sessions, CPU accounting
 * of the load generator and the servers, and latency summaries from a histogram.
 *
 * @module
 */
import process from "node:process";
import type { Histogram } from "../histogram.ts";
import { sleep, withTimeout } from "../process.ts";
import { type LockSession, memberCpuSeconds, type SystemDriver } from "../systems/types.ts";

/** Percentiles of one histogram, in milliseconds (from the histogram, never averages). */
export type LatencySummary = {
  count: number;
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
};

/** Summarises `histogram` (NaN fields when it is empty). */
export function summarise(histogram: Histogram): LatencySummary {
  const empty = histogram.count === 0;
  return {
    count: histogram.count,
    p50Ms: empty ? Number.NaN : histogram.percentileMs(50),
    p99Ms: empty ? Number.NaN : histogram.percentileMs(99),
    p999Ms: empty ? Number.NaN : histogram.percentileMs(99.9),
    maxMs: empty ? Number.NaN : histogram.maxMicros / 1000,
  };
}

/**
 * Cores busy on average during a measurement: the load generator (this process,
 * including its client libraries) and the sum over the server members (NaN when the
 * servers are not ours to read). A member restarted during the window is undercounted.
 */
export type CpuUsage = { clientCores: number; serverCores: number };

/** Starts CPU accounting; call the returned function at the end of the window. */
export async function startCpuAccounting(driver: SystemDriver): Promise<() => Promise<CpuUsage>> {
  const wallStartMs = performance.now();
  const clientStart = process.cpuUsage();
  const serverStart = sum(await memberCpuSeconds(driver));
  // An external cluster (--servers) has no pids here: its CPU is unknown, not zero.
  const serversKnown = driver.memberPids().some((pid) => pid !== null);
  return async () => {
    const wallSeconds = (performance.now() - wallStartMs) / 1000;
    const client = process.cpuUsage(clientStart);
    const serverEnd = sum(await memberCpuSeconds(driver));
    return {
      clientCores: (client.user + client.system) / 1e6 / wallSeconds,
      serverCores: serversKnown ? (serverEnd - serverStart) / wallSeconds : Number.NaN,
    };
  };
}

function sum(values: (number | null)[]): number {
  return values.reduce<number>((total, value) => total + (value ?? 0), 0);
}

/** How many sessions to open at once (bounded so a connect storm does not time out). */
const connectConcurrency = 16;

/** Opens `count` sessions named `${prefix}${i}`; closes them all if one fails. */
export async function connectAll(
  driver: SystemDriver,
  prefix: string,
  count: number,
): Promise<LockSession[]> {
  const sessions: LockSession[] = [];
  try {
    for (let first = 0; first < count; first += connectConcurrency) {
      const batch = Array.from(
        { length: Math.min(connectConcurrency, count - first) },
        (_, i) => withTimeout(driver.connect(`${prefix}${first + i}`), 20_000, "connect"),
      );
      const settled = await Promise.allSettled(batch);
      for (const result of settled) if (result.status === "fulfilled") sessions.push(result.value);
      const failed = settled.find((result) => result.status === "rejected");
      if (failed !== undefined) throw (failed as PromiseRejectedResult).reason;
    }
    return sessions;
  } catch (error) {
    await closeAll(sessions);
    throw error;
  }
}

/** Closes every session, each bounded to 10 s, never throwing. */
export async function closeAll(sessions: LockSession[]): Promise<void> {
  await Promise.all(
    sessions.map((session) => withTimeout(session.close(), 10_000, "close").catch(() => {})),
  );
}

/**
 * Retries `release` on errors (a failover can interrupt it) for up to `timeoutMs`,
 * giving each attempt up to `attemptTimeoutMs`.
 */
export async function releaseWithRetry(
  release: () => Promise<void>,
  timeoutMs: number,
  attemptTimeoutMs: number = timeoutMs,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    try {
      const remainingMs = Math.max(100, deadline - performance.now());
      await withTimeout(release(), Math.min(attemptTimeoutMs, remainingMs), "release");
      return;
    } catch (error) {
      if (performance.now() >= deadline) throw error;
      await sleep(10);
    }
  }
}

/** Median of numbers (NaN for none). */
export function median(values: readonly number[]): number {
  const sorted = values.filter((value) => !Number.isNaN(value)).sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? sorted[middle] ?? Number.NaN
    : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2;
}

/**
 * Scenario a, uncontended: C clients, each acquiring and releasing its own lock name in
 * a loop for a fixed time. Measures pairs per second and the latency of one
 * acquire+release pair.
 *
 * @module
 */
import { Histogram, type HistogramJson } from "../histogram.ts";
import { sleep } from "../process.ts";
import type { SystemDriver } from "../systems/types.ts";
import {
  closeAll,
  connectAll,
  type CpuUsage,
  type LatencySummary,
  startCpuAccounting,
  summarise,
} from "./common.ts";

/** Parameters of one run of scenario a. */
export type UncontendedParameters = {
  clients: number;
  seconds: number;
  /** Distinguishes lock names between runs. */
  runIndex: number;
  /** Per-operation timeout. */
  operationTimeoutMs: number;
};

/** Result of one run of scenario a. */
export type UncontendedRun = {
  clients: number;
  pairs: number;
  measuredSeconds: number;
  pairsPerSecond: number;
  pairLatency: LatencySummary;
  errors: number;
  cpu: CpuUsage;
  histogram: HistogramJson;
};

/** Runs scenario a once: warm-up (up to 1 s, not measured), then the measured window. */
export async function runUncontended(
  driver: SystemDriver,
  parameters: UncontendedParameters,
): Promise<UncontendedRun> {
  const { clients, seconds, runIndex } = parameters;
  const sessions = await connectAll(driver, `a${runIndex}-${clients}-`, clients);
  try {
    const histogram = new Histogram();
    const warmupMs = Math.min(1_000, seconds * 200);
    const startMs = performance.now();
    const measureFromMs = startMs + warmupMs;
    const endMs = measureFromMs + seconds * 1_000;
    let pairs = 0;
    let errors = 0;
    let lastCompletionMs = endMs;
    let finishCpu: (() => Promise<CpuUsage>) | null = null;
    const cpuTimer = sleep(warmupMs).then(async () => finishCpu = await startCpuAccounting(driver));
    await Promise.all(sessions.map(async (session, index) => {
      const name = `a-${runIndex}-${clients}-${index}`;
      while (performance.now() < endMs) {
        const beginMs = performance.now();
        try {
          const held = await session.acquire(name, parameters.operationTimeoutMs);
          await held.release();
        } catch {
          errors++;
          await sleep(10);
          continue;
        }
        const doneMs = performance.now();
        if (beginMs >= measureFromMs) {
          histogram.recordMs(doneMs - beginMs);
          pairs++;
          lastCompletionMs = Math.max(lastCompletionMs, doneMs);
        }
      }
    }));
    await cpuTimer;
    const cpu = finishCpu === null
      ? { clientCores: Number.NaN, serverCores: Number.NaN }
      : await (finishCpu as () => Promise<CpuUsage>)();
    const measuredSeconds = (lastCompletionMs - measureFromMs) / 1_000;
    return {
      clients,
      pairs,
      measuredSeconds,
      pairsPerSecond: pairs / measuredSeconds,
      pairLatency: summarise(histogram),
      errors,
      cpu,
      histogram: histogram.toJSON(),
    };
  } finally {
    await closeAll(sessions);
  }
}

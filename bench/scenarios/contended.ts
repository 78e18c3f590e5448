/**
 * Scenario b, contended: C clients (16) on one lock name, each acquiring and releasing
 * at once, in a loop. Measures handoffs per second (grants to a different client than
 * the previous grant), the wait from request to grant, and fairness: the fewest and
 * most acquisitions per client, and how many grants overtook a request while it
 * waited. With a FIFO queue and each client waiting at most once at a time, a request
 * is overtaken by at most C−1 grants, plus the few grants in flight between the server
 * and this process when it was sent; a lock that lets a releasing client barge back in
 * shows overtakes far above that. The run counts as FIFO when no request was overtaken
 * by more than 1.5·C grants.
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

/** Parameters of one run of scenario b. */
export type ContendedParameters = {
  clients: number;
  seconds: number;
  runIndex: number;
  operationTimeoutMs: number;
};

/** Result of one run of scenario b. */
export type ContendedRun = {
  clients: number;
  acquisitions: number;
  handoffs: number;
  measuredSeconds: number;
  handoffsPerSecond: number;
  wait: LatencySummary;
  fewestAcquisitions: number;
  mostAcquisitions: number;
  /** Largest number of grants to others between a request and its grant. */
  maxOvertakes: number;
  /** maxOvertakes ≤ 1.5·C (FIFO order, allowing for grants in flight). */
  fifo: boolean;
  errors: number;
  cpu: CpuUsage;
  histogram: HistogramJson;
};

/** Runs scenario b once: warm-up (up to 1 s, not measured), then the measured window. */
export async function runContended(
  driver: SystemDriver,
  parameters: ContendedParameters,
): Promise<ContendedRun> {
  const { clients, seconds, runIndex } = parameters;
  const sessions = await connectAll(driver, `b${runIndex}-`, clients);
  const name = `b-${runIndex}`;
  try {
    const histogram = new Histogram();
    const warmupMs = Math.min(1_000, seconds * 200);
    const measureFromMs = performance.now() + warmupMs;
    const endMs = measureFromMs + seconds * 1_000;
    const acquisitionsPerClient = new Array<number>(clients).fill(0);
    let grantsSeen = 0;
    let previousOwner = -1;
    let handoffs = 0;
    let acquisitions = 0;
    let maxOvertakes = 0;
    let errors = 0;
    let firstGrantMs = Number.NaN;
    let lastGrantMs = Number.NaN;
    let finishCpu: (() => Promise<CpuUsage>) | null = null;
    const cpuTimer = sleep(warmupMs).then(async () => finishCpu = await startCpuAccounting(driver));
    await Promise.all(sessions.map(async (session, index) => {
      while (performance.now() < endMs) {
        const requestMs = performance.now();
        const grantsBefore = grantsSeen;
        let release: () => Promise<void>;
        try {
          const held = await session.acquire(name, parameters.operationTimeoutMs);
          release = () => held.release();
        } catch {
          errors++;
          await sleep(10);
          continue;
        }
        const grantMs = performance.now();
        const overtakes = grantsSeen - grantsBefore;
        grantsSeen++;
        const isHandoff = previousOwner !== index;
        previousOwner = index;
        if (requestMs >= measureFromMs && grantMs <= endMs) {
          if (Number.isNaN(firstGrantMs)) firstGrantMs = grantMs;
          lastGrantMs = grantMs;
          histogram.recordMs(grantMs - requestMs);
          acquisitions++;
          acquisitionsPerClient[index] = (acquisitionsPerClient[index] ?? 0) + 1;
          if (isHandoff) handoffs++;
          maxOvertakes = Math.max(maxOvertakes, overtakes);
        }
        try {
          await release();
        } catch {
          errors++;
        }
      }
    }));
    await cpuTimer;
    const cpu = finishCpu === null
      ? { clientCores: Number.NaN, serverCores: Number.NaN }
      : await (finishCpu as () => Promise<CpuUsage>)();
    const measuredSeconds = Math.max(1e-3, (lastGrantMs - measureFromMs) / 1_000);
    return {
      clients,
      acquisitions,
      handoffs,
      measuredSeconds,
      handoffsPerSecond: handoffs / measuredSeconds,
      wait: summarise(histogram),
      fewestAcquisitions: Math.min(...acquisitionsPerClient),
      mostAcquisitions: Math.max(...acquisitionsPerClient),
      maxOvertakes,
      fifo: maxOvertakes <= 1.5 * clients,
      errors,
      cpu,
      histogram: histogram.toJSON(),
    };
  } finally {
    await closeAll(sessions);
  }
}

/**
 * Scenario d, scale: S sessions acquire L locks in total (L/S each, many in flight per
 * session) and hold them. Measures each member's RSS before and while holding, then
 * kills every member with SIGKILL, restarts them, and measures the time until a new
 * client acquires a new lock (restart to serving).
 *
 * @module
 */
import { pollUntil, withTimeout } from "../process.ts";
import { memberPeakRssBytes, memberRssBytes, type SystemDriver } from "../systems/types.ts";
import { closeAll, connectAll } from "./common.ts";

/** Parameters of one run of scenario d. */
export type ScaleParameters = {
  locks: number;
  sessions: number;
  /** Acquires in flight per session. */
  inflightPerSession: number;
  runIndex: number;
  /** Bound on the whole acquisition phase. */
  acquireTimeoutMs: number;
};

/** Result of one run of scenario d. */
export type ScaleRun = {
  locksRequested: number;
  locksHeld: number;
  sessions: number;
  acquireSeconds: number;
  locksPerSecond: number;
  rssBytesBefore: (number | null)[];
  rssBytesHeld: (number | null)[];
  /** Largest member RSS while holding the locks. */
  rssBytesHeldMax: number;
  /** Each member's peak RSS since its start (VmHWM), read with `rssBytesHeld`: the fill's peak. */
  rssBytesPeak: (number | null)[];
  restartToServingMs: number;
  errors: number;
};

/** Runs scenario d once on a freshly started cluster (the caller starts and stops it). */
export async function runScale(
  driver: SystemDriver,
  parameters: ScaleParameters,
): Promise<ScaleRun> {
  const { locks, runIndex } = parameters;
  const sessionCount = Math.max(1, Math.min(parameters.sessions, locks));
  const rssBytesBefore = await memberRssBytes(driver);
  const sessions = await connectAll(driver, `d${runIndex}-`, sessionCount);
  let locksHeld = 0;
  let errors = 0;
  try {
    const startMs = performance.now();
    const deadlineMs = startMs + parameters.acquireTimeoutMs;
    await Promise.all(sessions.map(async (session, sessionIndex) => {
      const share = Math.floor(locks / sessionCount) +
        (sessionIndex < locks % sessionCount ? 1 : 0);
      let next = 0;
      const worker = async () => {
        while (next < share && performance.now() < deadlineMs) {
          const lockIndex = next++;
          try {
            await session.acquire(`d-${runIndex}-${sessionIndex}-${lockIndex}`, 30_000);
            locksHeld++;
          } catch {
            errors++;
          }
        }
      };
      await Promise.all(Array.from({ length: parameters.inflightPerSession }, worker));
    }));
    const acquireSeconds = (performance.now() - startMs) / 1_000;
    // Let the servers settle (compaction, GC) before reading memory.
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    const rssBytesHeld = await memberRssBytes(driver);
    const rssBytesPeak = await memberPeakRssBytes(driver);
    const restartToServingMs = await restartAll(driver, runIndex);
    return {
      locksRequested: locks,
      locksHeld,
      sessions: sessionCount,
      acquireSeconds,
      locksPerSecond: locksHeld / acquireSeconds,
      rssBytesBefore,
      rssBytesHeld,
      rssBytesHeldMax: Math.max(...rssBytesHeld.map((bytes) => bytes ?? 0)),
      rssBytesPeak,
      restartToServingMs,
      errors,
    };
  } finally {
    await closeAll(sessions);
  }
}

/**
 * SIGKILLs every member, starts them again, and returns the milliseconds from the
 * restart until a new session acquires a new lock.
 */
async function restartAll(driver: SystemDriver, runIndex: number): Promise<number> {
  await Promise.all(driver.memberPids().map((_, index) => driver.killMember(index)));
  const restartMs = performance.now();
  for (let index = 0; index < driver.memberCount; index++) driver.restartMember(index);
  let attempt = 0;
  await pollUntil(
    "serving after a full restart",
    async () => {
      const [session] = await connectAll(driver, `d${runIndex}-probe-${attempt++}-`, 1);
      if (session === undefined) return null;
      try {
        const held = await withTimeout(session.acquire(`d-${runIndex}-probe`, 5_000), 6_000);
        await held.release();
        return true;
      } finally {
        await closeAll([session]);
      }
    },
    120_000,
    20,
    30_000,
  );
  return performance.now() - restartMs;
}

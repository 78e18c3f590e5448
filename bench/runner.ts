/**
 * Runs the selected scenarios against the selected systems, interleaved run by run,
 * and collects every run's result. Clusters are always stopped, also on errors.
 *
 * @module
 */
import type { BenchOptions } from "./options.ts";
import { killAllProcesses } from "./process.ts";
import { type ContendedRun, runContended } from "./scenarios/contended.ts";
import { type FailoverRun, runFailover } from "./scenarios/failover.ts";
import { runScale, type ScaleRun } from "./scenarios/scale.ts";
import { runUncontended, type UncontendedRun } from "./scenarios/uncontended.ts";
import { createDriver, type SystemDriver, type SystemName } from "./systems/mod.ts";

/** What happened to one system in a bench run. */
export type SystemReport = {
  system: SystemName;
  version: string;
  /** "skipped": not installed / not built (see `reason`); never silent. */
  status: "ok" | "skipped" | "failed";
  reason: string | null;
  /** Scenario runs keyed by client count (scenario a). */
  uncontended: { clients: number; runs: UncontendedRun[] }[];
  contended: ContendedRun[];
  failover: FailoverRun[];
  scale: ScaleRun[];
  /** Scenarios that failed, with why (they make the status "failed"). */
  problems: { scenario: string; message: string }[];
  /** Scenarios not applicable here (e.g. kills against an external cluster). */
  notes: string[];
};

/** Progress lines go to stderr, so stdout carries only the report. */
export function progress(line: string): void {
  console.error(`[${new Date().toISOString().slice(11, 19)}] ${line}`);
}

/** A system under test: its driver, its report, and whether its cluster is up. */
type Contender = { driver: SystemDriver; report: SystemReport; up: boolean };

/** One measurement of one system (a run of a scenario). */
type Task = {
  label: string;
  /** Whether the task needs a cluster we manage (kills, RSS). */
  needsManaged: boolean;
  run: (contender: Contender) => Promise<void>;
};

/**
 * Starts every selected system's cluster, then runs the tasks interleaved (run 1 of a
 * figure on every system, then run 2, ...), so that a change in the machine's load
 * affects every system alike and the ratios compare like with like. Every cluster is
 * stopped at the end, also on errors.
 */
export async function runBench(options: BenchOptions): Promise<SystemReport[]> {
  const contenders: Contender[] = [];
  try {
    for (const name of options.systems) {
      const driver = createDriver(
        name,
        options.servers,
        options.cpuProfileDir,
        options.dlockServerArgs,
      );
      contenders.push(await prepare(driver));
    }
    for (const task of tasks(options)) {
      for (const contender of contenders) {
        if (!contender.up) continue;
        if (task.needsManaged && !contender.driver.managed) continue;
        await step(contender, task);
      }
    }
    for (const contender of contenders) {
      if (contender.driver.managed) continue;
      for (const scenario of options.scenarios.filter((name) => name === "c" || name === "d")) {
        contender.report.notes.push(
          `${scenario}: not run, the cluster is external (--servers): no kills, no RSS`,
        );
      }
    }
  } finally {
    for (const contender of contenders) await contender.driver.stop();
    await killAllProcesses();
  }
  for (const { report } of contenders) {
    if (report.problems.length > 0 && report.status === "ok") report.status = "failed";
  }
  return contenders.map((contender) => contender.report);
}

/** Checks availability (loudly skipping what is missing) and starts the cluster. */
async function prepare(driver: SystemDriver): Promise<Contender> {
  const report: SystemReport = {
    system: driver.name,
    version: "",
    status: "ok",
    reason: null,
    uncontended: [],
    contended: [],
    failover: [],
    scale: [],
    problems: [],
    notes: [],
  };
  const reason = await driver.unavailableReason();
  if (reason !== null) {
    progress(`SKIPPED ${driver.name}: ${reason}`);
    return { driver, report: { ...report, status: "skipped", reason }, up: false };
  }
  report.version = await driver.version().catch((error) => `unknown (${String(error)})`);
  progress(
    `${driver.name}: ${report.version}; ` +
      (driver.managed
        ? `starting a ${driver.memberCount}-member cluster`
        : `using the given ${driver.memberCount}-member cluster (its CPU and memory are not measured)`),
  );
  try {
    await driver.start();
    return { driver, report, up: true };
  } catch (error) {
    report.status = "failed";
    report.reason = errorText(error);
    progress(`${driver.name}: FAILED to start: ${report.reason}`);
    await driver.stop();
    return { driver, report, up: false };
  }
}

/** Runs one task; on failure records it and restarts the cluster (or gives up on it). */
async function step(contender: Contender, task: Task): Promise<void> {
  const { driver, report } = contender;
  try {
    await task.run(contender);
  } catch (error) {
    const diagnostics = await driver.diagnostics().catch(() => "");
    const message = errorText(error) + (diagnostics === "" ? "" : `\n${diagnostics}`);
    report.problems.push({ scenario: task.label, message });
    progress(`${driver.name} ${task.label}: FAILED: ${message}\nrestarting the cluster`);
    await driver.stop();
    try {
      await driver.start();
    } catch (startError) {
      contender.up = false;
      report.status = "failed";
      report.reason = `cluster did not restart: ${errorText(startError)}`;
      progress(`${driver.name}: FAILED: ${report.reason}`);
    }
  }
}

/** The measurements, in the order they run (each on every system in turn). */
function tasks(options: BenchOptions): Task[] {
  const list: Task[] = [];
  const operationTimeoutMs = 30_000;
  const runs = Array.from({ length: options.runs }, (_, run) => run);
  if (options.scenarios.includes("a")) {
    for (const clients of options.clients) {
      for (const run of runs) {
        list.push({
          label: `a (${clients} clients, run ${run + 1})`,
          needsManaged: false,
          run: async ({ driver, report }) => {
            const result = await runUncontended(driver, {
              clients,
              seconds: options.seconds,
              runIndex: run,
              operationTimeoutMs,
            });
            let entry = report.uncontended.find((candidate) => candidate.clients === clients);
            if (entry === undefined) {
              entry = { clients, runs: [] };
              report.uncontended.push(entry);
            }
            entry.runs.push(result);
            progress(
              `${driver.name} a ${clients} clients run ${run + 1}: ${
                result.pairsPerSecond.toFixed(0)
              } pairs/s, ` +
                `p50 ${result.pairLatency.p50Ms.toFixed(2)} ms, p99 ${
                  result.pairLatency.p99Ms.toFixed(2)
                } ms, ` +
                `errors ${result.errors}, cpu client ${result.cpu.clientCores.toFixed(2)} servers ${
                  Number.isFinite(result.cpu.serverCores)
                    ? `${result.cpu.serverCores.toFixed(2)} cores`
                    : "not measured"
                }`,
            );
          },
        });
      }
    }
  }
  if (options.scenarios.includes("b")) {
    for (const run of runs) {
      list.push({
        label: `b (run ${run + 1})`,
        needsManaged: false,
        run: async ({ driver, report }) => {
          const result = await runContended(driver, {
            clients: options.contendedClients,
            seconds: options.seconds,
            runIndex: run,
            operationTimeoutMs,
          });
          report.contended.push(result);
          progress(
            `${driver.name} b run ${run + 1}: ${result.handoffsPerSecond.toFixed(0)} handoffs/s, ` +
              `wait p50 ${result.wait.p50Ms.toFixed(2)} ms p99 ${
                result.wait.p99Ms.toFixed(2)
              } ms, ` +
              `acquisitions/client ${result.fewestAcquisitions}..${result.mostAcquisitions}, ` +
              `max overtakes ${result.maxOvertakes}${result.fifo ? " (FIFO)" : " (NOT FIFO)"}`,
          );
        },
      });
    }
  }
  if (options.scenarios.includes("c")) {
    for (const run of runs) {
      list.push({
        label: `c (run ${run + 1})`,
        needsManaged: true,
        run: async ({ driver, report }) => {
          const result = await runFailover(driver, {
            kills: options.kills,
            runIndex: run,
            settleMs: options.smoke ? 500 : 2_000,
            operationTimeoutMs: 500,
          });
          report.failover.push(result);
          progress(
            `${driver.name} c run ${run + 1}: gaps ${
              result.kills.map((kill) => kill.gapMs.toFixed(0)).join(", ")
            } ms (median ${result.medianGapMs.toFixed(0)}, max ${result.maxGapMs.toFixed(0)})` +
              (result.kills.every((kill) => kill.recovered)
                ? ""
                : `; NOT RECOVERED; errors: ${result.errorSamples.join(" | ")}`),
          );
        },
      });
    }
  }
  if (options.scenarios.includes("d")) {
    for (const run of runs) {
      list.push({
        label: `d (run ${run + 1})`,
        needsManaged: true,
        run: async ({ driver, report }) => {
          // A fresh cluster per run: the previous run left locks and a full restart behind.
          await driver.stop();
          await driver.start();
          const result = await runScale(driver, {
            locks: options.locks,
            sessions: options.scaleSessions,
            inflightPerSession: 64,
            runIndex: run,
            acquireTimeoutMs: 600_000,
          });
          report.scale.push(result);
          const mebibytes = (list: (number | null)[]) =>
            list.map((bytes) => bytes === null ? "?" : (bytes / 2 ** 20).toFixed(0)).join(", ");
          progress(
            `${driver.name} d run ${
              run + 1
            }: ${result.locksHeld}/${result.locksRequested} locks held ` +
              `(${result.locksPerSecond.toFixed(0)}/s), RSS MiB ${
                mebibytes(result.rssBytesHeld)
              } (peak ${mebibytes(result.rssBytesPeak)}), ` +
              `restart to serving ${result.restartToServingMs.toFixed(0)} ms`,
          );
        },
      });
    }
  }
  return list;
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * `deno task sim`: runs the deterministic simulation over many seeds.
 *
 * Usage: `deno task sim [--seeds N] [--seed S] [--first F] [--steps K] [--nodes 1|3|5|7]
 * [--machine kv|lock] [--workers W] [--trace]`. `--seed S` replays one seed exactly and prints its trace
 * when it fails (or always with `--trace`). Exits 1 on any violation.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { runSeed, type SimMachineName, type SimResult } from "./simulation.ts";

interface Summary {
  seeds: number;
  failures: SimResult[];
  steps: number;
  elections: number;
  writes: number;
  reads: number;
  snapshots: number;
  crashes: number;
  maxTerm: number;
  slowWrites: number;
  crashesBeforePersist: number;
  commitsBeforeLeaderPersist: number;
  appliedBeforeWrite: number;
  appliedDuringWrite: number;
  sentDuringWrite: number;
}

function newSummary(): Summary {
  return {
    seeds: 0,
    failures: [],
    steps: 0,
    elections: 0,
    writes: 0,
    reads: 0,
    snapshots: 0,
    crashes: 0,
    maxTerm: 0,
    slowWrites: 0,
    crashesBeforePersist: 0,
    commitsBeforeLeaderPersist: 0,
    appliedBeforeWrite: 0,
    appliedDuringWrite: 0,
    sentDuringWrite: 0,
  };
}

function add(summary: Summary, result: SimResult): void {
  summary.seeds++;
  summary.steps += result.stats.steps;
  summary.elections += result.stats.elections;
  summary.writes += result.stats.writesAcknowledged;
  summary.reads += result.stats.readsServed;
  summary.snapshots += result.stats.snapshotsInstalled;
  summary.crashes += result.stats.crashes;
  summary.maxTerm = Math.max(summary.maxTerm, result.stats.maxTerm);
  summary.slowWrites += result.stats.slowWrites;
  summary.crashesBeforePersist += result.stats.crashesBeforePersist;
  summary.commitsBeforeLeaderPersist += result.stats.commitsBeforeLeaderPersist;
  summary.appliedBeforeWrite += result.stats.appliedBeforeWrite;
  summary.appliedDuringWrite += result.stats.appliedDuringWrite;
  summary.sentDuringWrite += result.stats.sentDuringWrite;
  if (!result.ok) summary.failures.push(result);
}

function printFailure(
  result: SimResult,
  steps: number,
  nodes: number | undefined,
  machine: SimMachineName,
): void {
  console.log(`\nVIOLATION seed=${result.seed}: ${result.violation}`);
  console.log(`parameters: ${result.parameters}`);
  console.log(`last ${result.trace.length} events:`);
  for (const line of result.trace) console.log(`  ${line}`);
  console.log(
    `replay: deno task sim --seed ${result.seed} --steps ${steps}${
      nodes === undefined ? "" : ` --nodes ${nodes}`
    }${machine === "kv" ? "" : ` --machine ${machine}`}`,
  );
}

const usage = `Usage: deno task sim [options]

Runs the deterministic simulation (Raft core, simulated network, disk and clock) over many
seeds and checks safety after every step. Exits 0 when every seed passes, 1 on a violation
(the seed's trace and a replay command are printed), 2 on bad usage.

Options:
  --seeds N        seeds to run (default 1000)
  --first F        first seed (default 1)
  --seed S         replay one seed exactly (prints its trace when it fails)
  --trace          with --seed: print the trace even when it passes
  --steps K        steps per seed (default 3000)
  --nodes N        cluster size 1, 3, 5 or 7 (default: varied by seed)
  --machine M      kv (default) or lock (the real lock state machine)
  --workers W      parallel workers 1..8 (default 1)
  -h, --help       show this help`;

/** A whole number from the command line, checked. */
function wholeNumber(text: string, option: string, min: number, max: number): number {
  const value = Number(text);
  if (text.trim() === "" || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new Error(
      `Cannot run as ${option} must be a whole number from ${min} to ${max}: received ${
        JSON.stringify(text)
      }`,
    );
  }
  return value;
}

/** Entry point; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      help: { type: "boolean", short: "h", default: false },
      seeds: { type: "string", default: "1000" },
      seed: { type: "string" },
      first: { type: "string", default: "1" },
      steps: { type: "string", default: "3000" },
      nodes: { type: "string" },
      workers: { type: "string", default: "1" },
      trace: { type: "boolean", default: false },
      machine: { type: "string", default: "kv" },
    },
  });
  if (values.help) {
    console.log(usage);
    return 0;
  }
  const steps = wholeNumber(values.steps, "--steps", 0, Number.MAX_SAFE_INTEGER);
  const nodes = values.nodes === undefined ? undefined : Number(values.nodes);
  if (nodes !== undefined && ![1, 3, 5, 7].includes(nodes)) {
    throw new Error(`Cannot run as --nodes must be 1, 3, 5 or 7: received ${values.nodes}`);
  }
  if (values.machine !== "kv" && values.machine !== "lock") {
    throw new Error(`Cannot run as --machine must be kv or lock: received ${values.machine}`);
  }
  const machine: SimMachineName = values.machine;
  const options = { machine, ...(nodes === undefined ? {} : { nodes }) };

  if (values.seed !== undefined) {
    const seed = wholeNumber(values.seed, "--seed", 0, 0xffff_ffff);
    const result = runSeed(seed, steps, options);
    console.log(`seed ${seed}: ${result.ok ? "ok" : "VIOLATION"} (${result.stats.steps} steps)`);
    console.log(`parameters: ${result.parameters}`);
    console.log(`stats: ${JSON.stringify(result.stats)}`);
    if (!result.ok) printFailure(result, steps, nodes, machine);
    else if (values.trace) {
      for (const line of result.trace) console.log(`  ${line}`);
    }
    return result.ok ? 0 : 1;
  }

  const seeds = wholeNumber(values.seeds, "--seeds", 1, 10_000_000);
  const first = wholeNumber(values.first, "--first", 0, 0xffff_ffff);
  const workers = wholeNumber(values.workers, "--workers", 1, 8);
  const started = performance.now();
  const summary = newSummary();
  let lastReport = started;
  const report = (force: boolean) => {
    const now = performance.now();
    if (!force && now - lastReport < 5000) return;
    lastReport = now;
    const seconds = (now - started) / 1000;
    console.log(
      `${summary.seeds}/${seeds} seeds, ${summary.failures.length} violations, ${
        seconds.toFixed(1)
      } s, ` +
        `${(summary.seeds / seconds).toFixed(1)} seeds/s`,
    );
  };

  if (workers === 1) {
    for (let seed = first; seed < first + seeds; seed++) {
      const result = runSeed(seed, steps, options);
      add(summary, result);
      if (!result.ok) printFailure(result, steps, nodes, machine);
      report(false);
    }
  } else {
    await runInWorkers(first, seeds, steps, nodes, machine, workers, (result) => {
      add(summary, result);
      if (!result.ok) printFailure(result, steps, nodes, machine);
      report(false);
    });
  }
  report(true);
  const seconds = (performance.now() - started) / 1000;
  console.log(
    `summary: ${summary.seeds} seeds x ${steps} steps (+ final calm), ${summary.failures.length} violations, ` +
      `${seconds.toFixed(1)} s wall, ${(summary.seeds / seconds).toFixed(1)} seeds/s, ` +
      `${
        (summary.steps / seconds).toFixed(0)
      } steps/s; totals: ${summary.steps} steps, ${summary.elections} elections, ` +
      `${summary.writes} acknowledged writes, ${summary.reads} reads, ${summary.snapshots} snapshot installs, ` +
      `${summary.crashes} crashes, max term ${summary.maxTerm}, ${summary.slowWrites} slow disk writes, ` +
      `${summary.crashesBeforePersist} leader crashes between early appends and persist, ` +
      `${summary.commitsBeforeLeaderPersist} commits before the leader's own persist, ` +
      `${summary.appliedBeforeWrite} entries applied before their Ready's write, ` +
      `${summary.appliedDuringWrite} applied and ${summary.sentDuringWrite} appends sent during a write`,
  );
  if (summary.failures.length > 0) {
    console.log(`failing seeds: ${summary.failures.map((failure) => failure.seed).join(" ")}`);
  }
  return summary.failures.length === 0 ? 0 : 1;
}

interface WorkerRequest {
  readonly seed: number;
  readonly steps: number;
  readonly nodes: number | undefined;
  readonly machine: SimMachineName;
}

async function runInWorkers(
  first: number,
  seeds: number,
  steps: number,
  nodes: number | undefined,
  machine: SimMachineName,
  workers: number,
  onResult: (result: SimResult) => void,
): Promise<void> {
  let next = first;
  const end = first + seeds;
  const pool: Worker[] = [];
  try {
    await Promise.all(Array.from({ length: workers }, () =>
      new Promise<void>((resolve, reject) => {
        const worker = new Worker(new URL("./worker.ts", import.meta.url), { type: "module" });
        pool.push(worker);
        const feed = () => {
          if (next >= end) {
            resolve();
            return;
          }
          const request: WorkerRequest = { seed: next++, steps, nodes, machine };
          worker.postMessage(request);
        };
        worker.onmessage = (event: MessageEvent<SimResult>) => {
          onResult(event.data);
          feed();
        };
        worker.onerror = (event) => {
          event.preventDefault();
          reject(new Error(`Cannot run the simulation as a worker failed: ${event.message}`));
        };
        feed();
      })));
  } finally {
    for (const worker of pool) worker.terminate();
  }
}

if (import.meta.main) {
  let code: number;
  try {
    code = await main(Deno.args);
  } catch (error) {
    console.error(error instanceof Error ? error.message : String(error));
    code = 2;
  }
  Deno.exit(code);
}

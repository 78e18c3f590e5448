/**
 * One chaos run: build the network lab (or fall back to loopback), start the cluster and
 * the workers, run the seeded fault schedule, heal, wait out a quiet period, read the
 * files back, check, and clean up whatever happens (error, SIGINT).
 *
 * @module
 */
import { type Availability, availability } from "./availability.ts";
import { check, type CheckResult } from "./checker.ts";
import { Cluster } from "./cluster.ts";
import { type FaultKind, HistoryWriter, nowMs, readHistories } from "./history.ts";
import { type InjectedFault, Nemesis, sleep } from "./nemesis.ts";
import { NetworkLab, networkSupport, RunSlot } from "./netns.ts";
import { ManagedProcess, type UnexpectedExit } from "./processes.ts";
import {
  describeSchedule,
  makeSchedule,
  networkFaultKinds,
  type PlannedFault,
} from "./schedule.ts";
import { fileOfLock } from "./worker.ts";
import { FilewriterClient } from "../../src/filewriter/client.ts";

const workerPath = new URL("./worker.ts", import.meta.url).pathname;

/** Options of a run. */
export type ChaosOptions = {
  seconds: number;
  seed: number;
  servers: number;
  clients: number;
  faults: readonly FaultKind[];
  /** Healthy seconds after the faults in which liveness must return. */
  quietSeconds: number;
  sessionTtlMs: number;
  locks: number;
  /** Where history, logs and data go (a new temp dir when absent). */
  directory?: string;
  /** "auto": namespaces when possible; "off": loopback, process faults only. */
  network: "auto" | "off";
  /** Crashes of dlock processes are reported but do not fail the run. */
  allowCrashes: boolean;
  log: (line: string) => void;
  /** Aborts the run early (SIGINT); cleanup still happens. */
  signal?: AbortSignal;
};

/** The outcome of a run. */
export type ChaosResult = {
  seed: number;
  directory: string;
  /** "namespaces" or "loopback (reason)". */
  networkMode: string;
  schedule: PlannedFault[];
  injected: InjectedFault[];
  check: CheckResult;
  availability: Availability;
  /** Processes that exited without the nemesis killing them (crashes). */
  unexpectedExits: UnexpectedExit[];
  allowCrashes: boolean;
  /** Start of the fault phase (wall clock, ms). */
  startMs: number;
  /** Null when liveness returned in the quiet period, else what failed. */
  livenessFailure: string | null;
  passed: boolean;
};

/**
 * Runs chaos and returns the verdict. Always tears down processes and namespaces.
 * @throws {Error} when the harness itself cannot work (cluster never elects a leader,
 * partitions cannot be verified); that is not a verdict on dlock.
 */
export async function runChaos(options: ChaosOptions): Promise<ChaosResult> {
  const directory = options.directory ??
    await Deno.makeTempDir({ prefix: `dlock-chaos-${options.seed}-` });
  await Deno.mkdir(directory, { recursive: true });
  const runSlot = await RunSlot.claim();
  let setUp: { lab: NetworkLab | null; networkMode: string };
  try {
    setUp = await setUpNetwork(options, runSlot);
  } catch (error) {
    await runSlot.release();
    throw error;
  }
  const { lab, networkMode } = setUp;
  const recordProcess = (pid: number) => runSlot.recordProcess(pid);
  const faults = lab === null
    ? options.faults.filter((f) => !networkFaultKinds.has(f))
    : options.faults;
  let cluster: Cluster | null = null;
  const workers: ManagedProcess[] = [];
  try {
    cluster = await Cluster.create({
      servers: options.servers,
      directory,
      sessionTtlMs: options.sessionTtlMs,
      lab,
      recordProcess,
    });
    const schedule = makeSchedule(options.seed, {
      seconds: options.seconds,
      servers: options.servers,
      clients: options.clients,
      faults,
      sessionTtlMs: options.sessionTtlMs,
    });
    options.log(
      `chaos: seed ${options.seed}, ${options.servers} servers, ${options.clients} clients, ${options.seconds}s + ${options.quietSeconds}s quiet, network: ${networkMode}`,
    );
    options.log(`chaos: directory ${directory}`);
    options.log(`chaos: schedule (${schedule.length} faults):`);
    for (const line of describeSchedule(schedule)) options.log(`  ${line}`);
    const leader = await cluster.start(60_000, options.signal);
    options.log(`chaos: cluster up, leader ${leader}`);
    return await drive(options, cluster, workers, schedule, directory, networkMode, recordProcess);
  } finally {
    await Promise.all(workers.map((w) => w.kill()));
    await cluster?.killAll();
    await lab?.teardown();
    await runSlot.release();
  }
}

async function setUpNetwork(
  options: ChaosOptions,
  runSlot: RunSlot,
): Promise<{ lab: NetworkLab | null; networkMode: string }> {
  if (options.network === "off") {
    return { lab: null, networkMode: "loopback (asked with --network off): process faults only" };
  }
  const support = await networkSupport();
  if (!support.available) {
    return {
      lab: null,
      networkMode: `loopback: NO NETWORK PARTITIONS (${support.reason}); process faults only`,
    };
  }
  const lab = await NetworkLab.create(options.servers, runSlot);
  try {
    await lab.selfTest();
  } catch (error) {
    await lab.teardown();
    throw error;
  }
  return {
    lab,
    networkMode: `namespaces (10.231.${lab.slot}.0/24, partitions verified by probe)`,
  };
}

async function drive(
  options: ChaosOptions,
  cluster: Cluster,
  workers: ManagedProcess[],
  schedule: PlannedFault[],
  directory: string,
  networkMode: string,
  recordProcess: (pid: number) => void,
): Promise<ChaosResult> {
  const harness = HistoryWriter.open(`${directory}/history-harness.jsonl`);
  const lockNames = Array.from({ length: options.locks }, (_, i) => `lock${i}`);
  const startMs = nowMs();
  const faultsEndMs = startMs + options.seconds * 1000;
  const workerDeadlineMs = faultsEndMs + options.quietSeconds * 1000;
  harness.write({ type: "phase", process: "harness", timeMs: startMs, phase: "start" });
  for (let index = 0; index < options.clients; index += 1) {
    const name = `w${index}`;
    const worker = new ManagedProcess(name, [
      Deno.execPath(),
      "run",
      "-A",
      workerPath,
      "--name",
      name,
      "--servers",
      cluster.serverAddresses.join(","),
      "--filewriter",
      cluster.filewriterAddress,
      "--locks",
      lockNames.join(","),
      "--history",
      `${directory}/history-${name}.jsonl`,
      "--seed",
      `${options.seed}`,
      "--deadline-ms",
      `${workerDeadlineMs}`,
      "--ttl-ms",
      `${options.sessionTtlMs}`,
    ], `${directory}/${name}.log`);
    worker.onStart = recordProcess;
    worker.start();
    workers.push(worker);
  }
  const nemesis = new Nemesis(cluster, workers, `${directory}/history-nemesis.jsonl`, options.log);
  const stop = options.signal ?? new AbortController().signal;
  await nemesis.run(schedule, startMs, stop);
  await sleep(faultsEndMs - nowMs(), stop);
  if (stop.aborted) throw new Error("Cannot finish the run as it was interrupted");
  await cluster.healAll();
  for (const worker of workers) worker.resume();
  harness.write({ type: "phase", process: "harness", timeMs: nowMs(), phase: "faults-end" });
  harness.write({ type: "phase", process: "harness", timeMs: nowMs(), phase: "quiet-start" });
  options.log("chaos: faults over, everything healed; quiet period");
  // Workers stop by themselves at their deadline: from just before it, an exit is expected.
  await sleep(workerDeadlineMs - 200 - nowMs(), stop);
  for (const worker of workers) worker.expectExit();
  await sleep(workerDeadlineMs - nowMs(), stop);
  harness.write({ type: "phase", process: "harness", timeMs: nowMs(), phase: "end" });
  await Promise.all(workers.map(async (worker) => {
    if ((await worker.waitExit(20_000)) === null) await worker.kill();
  }));
  harness.close();
  nemesis.close();
  if (stop.aborted) throw new Error("Cannot finish the run as it was interrupted");
  const files = await readFiles(cluster.filewriterAddress, lockNames);
  const unexpectedExits = [cluster.filewriter, ...cluster.servers, ...workers]
    .flatMap((p) => p.unexpectedExits);
  await cluster.stopAll(5_000);
  const events = await readHistories(directory);
  const lockOfFile = new Map(lockNames.map((lock) => [fileOfLock(lock), lock]));
  const result = check({ events, files, lockOfFile });
  const figures = availability(events, result.operations);
  const livenessFailure = figures.acquiresOkQuiet === 0
    ? `no acquire succeeded in the ${options.quietSeconds}s quiet period after healing`
    : null;
  return {
    seed: options.seed,
    directory,
    networkMode,
    schedule,
    injected: nemesis.injected,
    check: result,
    availability: figures,
    unexpectedExits,
    allowCrashes: options.allowCrashes,
    startMs,
    livenessFailure,
    passed: result.violations.length === 0 && livenessFailure === null &&
      (options.allowCrashes || unexpectedExits.length === 0),
  };
}

/**
 * Reads every lock's file from the filewriter (retrying while it restarts).
 * @throws {Error} when the filewriter does not answer within 30 s.
 */
async function readFiles(address: string, locks: readonly string[]): Promise<Map<string, string>> {
  const client = new FilewriterClient(address, { timeoutMs: 5_000, attemptsMax: 10 });
  const files = new Map<string, string>();
  const decoder = new TextDecoder();
  const deadline = Date.now() + 30_000;
  for (const lock of locks) {
    const file = fileOfLock(lock);
    while (true) {
      try {
        const bytes = await client.read(file);
        files.set(file, bytes === null ? "" : decoder.decode(bytes));
        break;
      } catch (error) {
        if (Date.now() > deadline) {
          throw new Error(`Cannot read ${file} from the filewriter at ${address}`, {
            cause: error,
          });
        }
        await sleep(500);
      }
    }
  }
  return files;
}

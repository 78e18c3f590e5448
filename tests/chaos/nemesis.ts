/**
 * The nemesis: runs a fault schedule against the cluster and the workers, and records the
 * start and end of every fault in the history.
 *
 * @module
 */
import type { Cluster } from "./cluster.ts";
import { type FaultKind, HistoryWriter, nowMs } from "./history.ts";
import type { ManagedProcess } from "./processes.ts";
import type { PlannedFault } from "./schedule.ts";

/** What one fault did, for the summary. */
export type InjectedFault = {
  id: number;
  kind: FaultKind;
  target: string;
  startMs: number;
  endMs: number;
  hitLeader: boolean;
};

const serverPort = 5_000;

/** Sleeps, waking early when `signal` aborts. */
export function sleep(milliseconds: number, signal?: AbortSignal): Promise<void> {
  if (milliseconds <= 0 || signal?.aborted === true) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(done, milliseconds);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}

/** Runs faults; one instance per run. */
export class Nemesis {
  readonly #cluster: Cluster;
  readonly #workers: readonly ManagedProcess[];
  readonly #history: HistoryWriter;
  readonly #log: (line: string) => void;
  readonly injected: InjectedFault[] = [];

  constructor(
    cluster: Cluster,
    workers: readonly ManagedProcess[],
    historyPath: string,
    log: (line: string) => void,
  ) {
    this.#cluster = cluster;
    this.#workers = workers;
    this.#history = HistoryWriter.open(historyPath);
    this.#log = log;
  }

  /**
   * Runs the whole schedule from `originMs` (plan offsets are relative to it); resolves
   * when every fault has ended or `signal` aborted (then the caller heals everything).
   */
  async run(plan: readonly PlannedFault[], originMs: number, signal: AbortSignal): Promise<void> {
    const serverFaults = plan.filter((f) => f.kind !== "client-pause");
    const clientFaults = plan.filter((f) => f.kind === "client-pause");
    await Promise.all([
      this.#lane(serverFaults, originMs, signal),
      this.#lane(clientFaults, originMs, signal),
    ]);
  }

  async #lane(faults: readonly PlannedFault[], originMs: number, signal: AbortSignal) {
    for (const fault of faults) {
      await sleep(originMs + fault.atMs - Date.now(), signal);
      if (signal.aborted) return;
      await this.#runFault(fault, signal);
    }
  }

  async #runFault(fault: PlannedFault, signal: AbortSignal): Promise<void> {
    const leader = await this.#cluster.leaderIndex();
    const action = await this.#start(fault, leader);
    const startMs = nowMs();
    this.#history.write({
      type: "nemesis",
      process: "nemesis",
      timeMs: action.timeMs,
      faultId: fault.id,
      fault: fault.kind,
      phase: "start",
      target: action.target,
      hitLeader: action.hitLeader,
    });
    this.#log(
      `nemesis: #${fault.id} ${fault.kind} ${action.target}${
        action.hitLeader ? " (leader)" : ""
      } for ${(fault.durationMs / 1000).toFixed(1)}s`,
    );
    await sleep(fault.durationMs, signal);
    // The fault ends when healing begins: a resumed worker may log its next operation
    // before `end()` returns, and that operation must not seem to run during the pause.
    const endMs = nowMs();
    await action.end();
    this.#history.write({
      type: "nemesis",
      process: "nemesis",
      timeMs: endMs,
      faultId: fault.id,
      fault: fault.kind,
      phase: "end",
      target: action.target,
    });
    this.injected.push({
      id: fault.id,
      kind: fault.kind,
      target: action.target,
      startMs,
      endMs,
      hitLeader: action.hitLeader,
    });
  }

  /** Starts a fault; returns how to end it. */
  async #start(
    fault: PlannedFault,
    leader: number | null,
  ): Promise<
    { target: string; hitLeader: boolean; timeMs: number; end: () => void | Promise<void> }
  > {
    const cluster = this.#cluster;
    const chosen = fault.targetLeader && leader !== null ? leader : fault.serverIndex;
    const name = (index: number) => cluster.serverAddresses[index] ?? `server-${index}`;
    switch (fault.kind) {
      case "kill": {
        const server = cluster.servers[chosen];
        const timeMs = nowMs();
        await server?.kill();
        return {
          target: name(chosen),
          hitLeader: chosen === leader,
          timeMs,
          end: () => server?.start(),
        };
      }
      case "pause": {
        const server = cluster.servers[chosen];
        const timeMs = nowMs();
        server?.pause();
        return {
          target: name(chosen),
          hitLeader: chosen === leader,
          timeMs,
          end: () => server?.resume(),
        };
      }
      case "partition":
      case "partition-oneway": {
        const [sideA, sideB] = fault.sides;
        const both = fault.kind === "partition";
        const timeMs = nowMs();
        await this.#cut(sideA, sideB, both);
        const arrow = both ? " | " : " -/-> ";
        return {
          target: `${sideA.map(name).join(",")}${arrow}${sideB.map(name).join(",")}`,
          hitLeader: leader !== null && (sideA.includes(leader) && sideA.length < sideB.length),
          timeMs,
          end: () => this.#heal(),
        };
      }
      case "isolate-leader": {
        const isolated = leader ?? fault.serverIndex;
        const others = cluster.serverAddresses.map((_, i) => i).filter((i) => i !== isolated);
        const timeMs = nowMs();
        await this.#cut([isolated], others, true);
        return {
          target: name(isolated),
          hitLeader: leader !== null,
          timeMs,
          end: () => this.#heal(),
        };
      }
      case "client-pause": {
        const worker = this.#workers[fault.workerIndex];
        const timeMs = nowMs();
        worker?.pause();
        return {
          target: worker?.name ?? `worker-${fault.workerIndex}`,
          hitLeader: false,
          timeMs,
          end: () => worker?.resume(),
        };
      }
      case "filewriter-kill": {
        const timeMs = nowMs();
        await cluster.filewriter.kill();
        return {
          target: cluster.filewriterAddress,
          hitLeader: false,
          timeMs,
          end: () => cluster.filewriter.start(),
        };
      }
      case "restart-all": {
        const timeMs = nowMs();
        await Promise.all([...cluster.servers, cluster.filewriter].map((p) => p.kill()));
        return {
          target: "all servers and the filewriter",
          hitLeader: true,
          timeMs,
          end: () => {
            cluster.filewriter.start();
            for (const server of cluster.servers) server.start();
          },
        };
      }
    }
  }

  /** Drops traffic from every server of `from` to every server of `to` (and back). */
  async #cut(from: readonly number[], to: readonly number[], both: boolean): Promise<void> {
    const lab = this.#cluster.lab;
    if (lab === null) throw new Error("Cannot partition as the run has no network namespaces");
    for (const a of from) {
      for (const b of to) {
        await lab.block(a, b);
        if (both) await lab.block(b, a);
      }
    }
    // Verify before relying on it: the kernel routes into the blackhole and a TCP connect
    // from one side to the other's server port fails.
    const a = from[0];
    const b = to[0];
    if (a === undefined || b === undefined) return;
    const address = lab.serverAddresses[b] ?? "";
    if (!(await lab.routesToBlackhole(a, address))) {
      throw new Error(`Cannot trust the partition as ${a} -> ${address} is not blackholed`);
    }
    if (await lab.canConnect(a, address, serverPort, 1_000)) {
      throw new Error(`Cannot trust the partition as ${a} still connects to ${address}`);
    }
  }

  async #heal(): Promise<void> {
    await this.#cluster.lab?.heal();
  }

  /** Closes the history file. */
  close(): void {
    this.#history.close();
  }
}

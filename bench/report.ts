/**
 * Turns the runs into figures (median with min–max over runs, per system), the ratios
 * dlock/etcd and dlock/zookeeper, a readable table, and the JSON report.
 *
 * @module
 */
import type { BenchOptions } from "./options.ts";
import type { SystemReport } from "./runner.ts";
import { median } from "./scenarios/common.ts";
import type { SystemName } from "./systems/types.ts";

/** Median and range of one figure over the runs of one system. */
export type Spread = { median: number; min: number; max: number; runs: number };

/** One line of the report. */
export type Figure = {
  id: string;
  label: string;
  unit: string;
  /** Which direction is better, for reading the ratio. */
  better: "higher" | "lower" | "none";
  values: Partial<Record<SystemName, Spread>>;
  /** dlock's median over the peer's median. */
  ratios: { etcd: number | null; zookeeper: number | null };
};

/** The whole report, as printed with `--json`. */
export type BenchReport = {
  startedAt: string;
  finishedAt: string;
  machine: Machine;
  options: BenchOptions;
  systems: SystemReport[];
  figures: Figure[];
};

/** Where the numbers were measured. */
export type Machine = {
  cpus: number;
  memoryBytes: number;
  kernel: string;
  deno: string;
};

/** Facts about this machine for the report. */
export function describeMachine(): Machine {
  return {
    cpus: navigator.hardwareConcurrency,
    memoryBytes: Deno.systemMemoryInfo().total,
    kernel: Deno.osRelease(),
    deno: Deno.version.deno,
  };
}

function spread(values: number[]): Spread | null {
  const finite = values.filter((value) => Number.isFinite(value));
  if (finite.length === 0) return null;
  return {
    median: median(finite),
    min: Math.min(...finite),
    max: Math.max(...finite),
    runs: finite.length,
  };
}

type FigureSource = {
  id: string;
  label: string;
  unit: string;
  better: Figure["better"];
  valuesOf: (report: SystemReport) => number[];
};

function figureSources(options: BenchOptions): FigureSource[] {
  const sources: FigureSource[] = [];
  for (const clients of options.clients) {
    const runs = (report: SystemReport) =>
      report.uncontended.find((entry) => entry.clients === clients)?.runs ?? [];
    const prefix = `a.${clients}`;
    sources.push(
      {
        id: `${prefix}.pairsPerSecond`,
        label: `a ${clients} clients: pairs/s`,
        unit: "1/s",
        better: "higher",
        valuesOf: (r) => runs(r).map((run) => run.pairsPerSecond),
      },
      {
        id: `${prefix}.p50Ms`,
        label: `a ${clients} clients: pair p50`,
        unit: "ms",
        better: "lower",
        valuesOf: (r) => runs(r).map((run) => run.pairLatency.p50Ms),
      },
      {
        id: `${prefix}.p99Ms`,
        label: `a ${clients} clients: pair p99`,
        unit: "ms",
        better: "lower",
        valuesOf: (r) => runs(r).map((run) => run.pairLatency.p99Ms),
      },
      {
        id: `${prefix}.p999Ms`,
        label: `a ${clients} clients: pair p99.9`,
        unit: "ms",
        better: "lower",
        valuesOf: (r) => runs(r).map((run) => run.pairLatency.p999Ms),
      },
      {
        id: `${prefix}.serverCores`,
        label: `a ${clients} clients: server CPU`,
        unit: "cores",
        better: "none",
        valuesOf: (r) => runs(r).map((run) => run.cpu.serverCores),
      },
      {
        id: `${prefix}.clientCores`,
        label: `a ${clients} clients: client CPU`,
        unit: "cores",
        better: "none",
        valuesOf: (r) => runs(r).map((run) => run.cpu.clientCores),
      },
    );
  }
  const b = (
    label: string,
    id: string,
    unit: string,
    better: Figure["better"],
    value: (run: SystemReport["contended"][number]) => number,
  ) =>
    sources.push({
      id: `b.${id}`,
      label: `b ${options.contendedClients} on 1 lock: ${label}`,
      unit,
      better,
      valuesOf: (r) => r.contended.map(value),
    });
  b("handoffs/s", "handoffsPerSecond", "1/s", "higher", (run) => run.handoffsPerSecond);
  b("wait p50", "waitP50Ms", "ms", "lower", (run) => run.wait.p50Ms);
  b("wait p99", "waitP99Ms", "ms", "lower", (run) => run.wait.p99Ms);
  b("wait p99.9", "waitP999Ms", "ms", "lower", (run) => run.wait.p999Ms);
  b("fewest acq/client", "fewestAcquisitions", "", "higher", (run) => run.fewestAcquisitions);
  b("most acq/client", "mostAcquisitions", "", "none", (run) => run.mostAcquisitions);
  b("max overtakes", "maxOvertakes", "", "lower", (run) => run.maxOvertakes);
  b("FIFO runs (1=yes)", "fifo", "", "higher", (run) => run.fifo ? 1 : 0);
  b("server CPU", "serverCores", "cores", "none", (run) => run.cpu.serverCores);
  b("client CPU", "clientCores", "cores", "none", (run) => run.cpu.clientCores);
  sources.push(
    {
      id: "c.medianGapMs",
      label: `c failover (${options.kills} kills): median gap`,
      unit: "ms",
      better: "lower",
      valuesOf: (r) => r.failover.map((run) => run.medianGapMs),
    },
    {
      id: "c.maxGapMs",
      label: `c failover (${options.kills} kills): max gap`,
      unit: "ms",
      better: "lower",
      valuesOf: (r) => r.failover.map((run) => run.maxGapMs),
    },
    {
      id: "d.locksHeld",
      label: "d scale: locks held",
      unit: "",
      better: "higher",
      valuesOf: (r) => r.scale.map((run) => run.locksHeld),
    },
    {
      id: "d.locksPerSecond",
      label: "d scale: acquire rate while filling",
      unit: "1/s",
      better: "higher",
      valuesOf: (r) => r.scale.map((run) => run.locksPerSecond),
    },
    {
      id: "d.rssMiBMax",
      label: "d scale: RSS of largest member",
      unit: "MiB",
      better: "lower",
      valuesOf: (r) => r.scale.map((run) => run.rssBytesHeldMax / 2 ** 20),
    },
    {
      id: "d.peakRssMiBMax",
      label: "d scale: peak RSS (VmHWM), largest",
      unit: "MiB",
      better: "lower",
      valuesOf: (r) =>
        r.scale.map((run) => Math.max(...run.rssBytesPeak.map((bytes) => bytes ?? 0)) / 2 ** 20),
    },
    {
      id: "d.rssMiBBefore",
      label: "d scale: RSS of largest member, empty",
      unit: "MiB",
      better: "lower",
      valuesOf: (r) =>
        r.scale.map((run) => Math.max(...run.rssBytesBefore.map((bytes) => bytes ?? 0)) / 2 ** 20),
    },
    {
      id: "d.restartToServingMs",
      label: "d scale: restart to serving",
      unit: "ms",
      better: "lower",
      valuesOf: (r) => r.scale.map((run) => run.restartToServingMs),
    },
  );
  const selected = new Set(options.scenarios);
  return sources.filter((source) => selected.has(source.id[0] as "a" | "b" | "c" | "d"));
}

/** Computes every figure from the system reports. */
export function computeFigures(options: BenchOptions, reports: SystemReport[]): Figure[] {
  return figureSources(options).map((source) => {
    const values: Partial<Record<SystemName, Spread>> = {};
    for (const report of reports) {
      const value = spread(source.valuesOf(report));
      if (value !== null) values[report.system] = value;
    }
    const ratio = (peer: SystemName) => {
      const ours = values.dlock?.median;
      const theirs = values[peer]?.median;
      return ours === undefined || theirs === undefined || theirs === 0 ? null : ours / theirs;
    };
    return {
      id: source.id,
      label: source.label,
      unit: source.unit,
      better: source.better,
      values,
      ratios: { etcd: ratio("etcd"), zookeeper: ratio("zookeeper") },
    };
  });
}

function formatNumber(value: number): string {
  if (!Number.isFinite(value)) return "-";
  const magnitude = Math.abs(value);
  if (magnitude >= 100) return value.toFixed(0);
  if (magnitude >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

/** Median (min–max); "[k/n]" marks a figure with fewer good runs than requested. */
function formatSpread(value: Spread | undefined, runsRequested: number): string {
  if (value === undefined) return "-";
  const short = value.runs < runsRequested ? ` [${value.runs}/${runsRequested}]` : "";
  if (value.runs === 1 || value.min === value.max) return formatNumber(value.median) + short;
  return `${formatNumber(value.median)} (${formatNumber(value.min)}–${
    formatNumber(value.max)
  })${short}`;
}

function formatRatio(ratio: number | null, better: Figure["better"]): string {
  if (ratio === null) return "-";
  const text = `${ratio.toFixed(2)}×`;
  if (better === "none") return text;
  const ahead = better === "higher" ? ratio > 1 : ratio < 1;
  return ratio === 1 ? text : `${text} ${ahead ? "+" : "-"}`;
}

/** The readable table: one row per figure, median (min–max) per system, and ratios. */
export function renderTable(report: BenchReport): string {
  const systems = report.systems.map((system) => system.system);
  const header = ["figure", "unit", ...systems];
  if (systems.includes("dlock") && systems.includes("etcd")) header.push("dlock/etcd");
  if (systems.includes("dlock") && systems.includes("zookeeper")) header.push("dlock/zk");
  const rows = report.figures.map((figure) => {
    const row = [
      figure.label,
      figure.unit,
      ...systems.map((name) => formatSpread(figure.values[name], report.options.runs)),
    ];
    if (header.includes("dlock/etcd")) row.push(formatRatio(figure.ratios.etcd, figure.better));
    if (header.includes("dlock/zk")) row.push(formatRatio(figure.ratios.zookeeper, figure.better));
    return row;
  });
  const widths = header.map((cell, column) =>
    Math.max(cell.length, ...rows.map((row) => (row[column] ?? "").length))
  );
  const line = (cells: string[]) =>
    cells.map((cell, column) =>
      column < 2 ? cell.padEnd(widths[column] ?? 0) : cell.padStart(widths[column] ?? 0)
    )
      .join("  ");
  const lines = [
    `dlock bench, ${report.startedAt} .. ${report.finishedAt}`,
    `machine: ${report.machine.cpus} CPUs, ${
      (report.machine.memoryBytes / 2 ** 30).toFixed(1)
    } GiB, ` +
    `Linux ${report.machine.kernel}, deno ${report.machine.deno}`,
    ...report.systems.map((system) =>
      `${system.system}: ${system.status}${system.version === "" ? "" : `, ${system.version}`}` +
      (system.reason === null ? "" : ` (${system.reason})`)
    ),
    ...report.systems.flatMap((system) => [
      ...system.problems.map((problem) =>
        `${system.system} ${problem.scenario}: FAILED: ${problem.message}`
      ),
      ...system.notes.map((note) => `${system.system} ${note}`),
    ]),
    ...(report.options.dlockServerArgs.length === 0
      ? []
      : [`dlock servers ran with extra arguments: ${report.options.dlockServerArgs.join(" ")}`]),
    `runs: ${report.options.runs}, values are median (min–max) over runs; ratios are dlock's ` +
    `median over the peer's, + where dlock is better, - where worse; [k/n]: only k of n runs ` +
    `succeeded (see FAILED above)`,
    "",
    line(header),
    line(widths.map((width) => "-".repeat(width))),
    ...rows.map(line),
  ];
  return lines.join("\n");
}

/**
 * The run's summary table and, on a violation, the report written next to the history.
 *
 * @module
 */
import type { GapStats } from "./availability.ts";
import type { OpKind } from "./history.ts";
import type { ChaosResult } from "./run.ts";

function milliseconds(value: number): string {
  return Number.isFinite(value) ? `${Math.round(value)} ms` : "never";
}

function gaps(stats: GapStats): string {
  if (stats.count === 0) return "-";
  return `n=${stats.count} median ${milliseconds(stats.medianMs)} max ${milliseconds(stats.maxMs)}`;
}

function table(rows: readonly (readonly [string, string])[]): string[] {
  const width = Math.max(...rows.map(([key]) => key.length));
  return rows.map(([key, value]) => `  ${key.padEnd(width)}  ${value}`);
}

/** The summary table of a run, as printed. */
export function formatSummary(result: ChaosResult): string {
  const figures = result.availability;
  const kinds: OpKind[] = ["acquire", "append", "release", "connect", "close"];
  const faults = Object.entries(figures.faultsByKind)
    .map(([kind, count]) => `${kind} ${count}`)
    .join(", ");
  const rows: [string, string][] = [
    ["seed", `${result.seed}`],
    ["network", result.networkMode],
    ["faults injected", `${result.injected.length} (${faults || "none"})`],
    ...kinds.map((kind): [string, string] => {
      const c = figures.counts[kind];
      return [`${kind} ok/fail/unknown`, `${c.ok} / ${c.fail} / ${c.info}`];
    }),
    ["records in files", `${result.check.records}`],
    ["locks lost (handle signal aborted)", `${figures.locksLost}`],
    ["ok ops/s during faults", figures.okPerSecondDuringFaults.toFixed(1)],
    ["ok ops/s between faults", figures.okPerSecondBetweenFaults.toFixed(1)],
    ["ok ops/s after healing", figures.okPerSecondQuiet.toFixed(1)],
    ["first acquire after heal", milliseconds(figures.quietFirstAcquireMs)],
    ["failover gap, leader kill", gaps(figures.leaderKillGaps)],
    ["failover gap, any leader fault", gaps(figures.leaderFaultGaps)],
    [
      "crashes (unexpected exits)",
      `${result.unexpectedExits.length}${
        result.unexpectedExits.length > 0 && result.allowCrashes ? " (allowed)" : ""
      }`,
    ],
    ["liveness after heal", result.livenessFailure ?? "ok"],
    ["violations", `${result.check.violations.length}`],
    ["verdict", result.passed ? "PASS" : "FAIL"],
  ];
  const lines = ["", "chaos summary", ...table(rows)];
  if (figures.gaps.length > 0) {
    lines.push("  gaps after leader faults:");
    for (const gap of figures.gaps) {
      lines.push(`    #${gap.faultId} ${gap.fault}: ${milliseconds(gap.gapMs)}`);
    }
  }
  for (const exit of result.unexpectedExits) {
    const atSeconds = ((exit.timeMs - result.startMs) / 1000).toFixed(1);
    const during = result.injected
      .filter((f) => f.startMs <= exit.timeMs && exit.timeMs <= f.endMs + 1_000)
      .map((f) => `#${f.id} ${f.kind}`)
      .join(", ");
    lines.push(
      `  crash: ${exit.name} exited at ${atSeconds}s with code ${exit.code} signal ${
        exit.signal ?? "-"
      }${during === "" ? "" : ` during ${during}`} (restarted after 1 s; see its log)`,
    );
  }
  const byKind = new Map<string, number>();
  for (const violation of result.check.violations) {
    byKind.set(violation.kind, (byKind.get(violation.kind) ?? 0) + 1);
  }
  for (const [kind, count] of byKind) lines.push(`  violation ${kind}: ${count}`);
  for (const violation of result.check.violations.slice(0, 10)) {
    lines.push(`    - ${violation.message}`);
  }
  return lines.join("\n");
}

/**
 * Writes `violations.txt` (what went wrong, minimal) and `violations.json` (with the
 * operations involved) into the run's directory; returns the text file's path.
 */
export async function writeViolationReport(result: ChaosResult): Promise<string> {
  const path = `${result.directory}/violations.txt`;
  const lines = [
    `dlock chaos run, seed ${result.seed}: ${result.check.violations.length} violation(s)`,
    `replay: deno task chaos --seed ${result.seed} (same schedule; timing differs)`,
    `history: ${result.directory}/history-*.jsonl; server logs: ${result.directory}/*.log`,
    "",
    ...result.check.violations.map((v) => `[${v.kind}] ${v.message}`),
  ];
  if (result.livenessFailure !== null) lines.push(`[liveness] ${result.livenessFailure}`);
  for (const exit of result.unexpectedExits) {
    lines.push(`[crash] ${exit.name} exited with code ${exit.code} (signal ${exit.signal ?? "-"})`);
  }
  await Deno.writeTextFile(path, lines.join("\n") + "\n");
  await Deno.writeTextFile(
    `${result.directory}/violations.json`,
    JSON.stringify(result.check.violations, (_, v) => v === Infinity ? "Infinity" : v, 2),
  );
  return path;
}

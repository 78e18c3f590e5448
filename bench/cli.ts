/**
 * `dlock bench` and `deno task bench`: parses the options, runs the bench, prints the
 * table (or JSON), and always kills the clusters it started, also on Ctrl-C.
 *
 * @module
 */
import { dirname } from "node:path";
import { type BenchOptions, parseOptions, usage } from "./options.ts";
import { installSignalCleanup, killAllProcesses, setKeepWorkDirs } from "./process.ts";
import { type BenchReport, computeFigures, describeMachine, renderTable } from "./report.ts";
import { progress, runBench } from "./runner.ts";
import { usageFailure } from "../src/cli/_usage.ts";

/** Runs the bench; returns 0 when every selected scenario ran, 1 on failures, 2 on usage. */
export async function run(args: string[]): Promise<number> {
  let options: BenchOptions;
  try {
    const parsed = parseOptions(args);
    if (parsed === "help") {
      console.log(usage);
      return 0;
    }
    options = parsed;
  } catch (error) {
    return usageFailure("bench", usage, error);
  }
  if (options.output !== null) {
    // Fail now rather than after a long run (bench/results/ is not in a fresh clone).
    try {
      await Deno.mkdir(dirname(options.output), { recursive: true });
    } catch (error) {
      console.error(`dlock bench: cannot create the directory of --output: ${String(error)}`);
      return 2;
    }
  }
  installSignalCleanup(() => Promise.resolve());
  setKeepWorkDirs(options.keep);
  const startedAt = new Date().toISOString();
  progress(
    `bench: systems ${options.systems.join(",")}, scenarios ${options.scenarios.join(",")}, ` +
      `${options.runs} run(s), ${options.seconds} s each`,
  );
  try {
    const systems = await runBench(options);
    const report: BenchReport = {
      startedAt,
      finishedAt: new Date().toISOString(),
      machine: describeMachine(),
      options,
      systems,
      figures: computeFigures(options, systems),
    };
    const json = JSON.stringify(report, null, 2);
    // The report first: a failed write must not lose a long run's figures.
    console.log(options.json ? json : renderTable(report));
    if (options.output !== null) {
      try {
        await Deno.writeTextFile(options.output, json + "\n");
      } catch (error) {
        console.error(`dlock bench: cannot write ${options.output}: ${String(error)}`);
        return 1;
      }
    }
    return systems.some((system) => system.status === "failed") ? 1 : 0;
  } finally {
    await killAllProcesses();
  }
}

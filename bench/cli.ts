/**
 * `dlock bench` and `deno task bench`: parses the options, runs the bench, prints the
 * table (or JSON), and always kills the clusters it started, also on Ctrl-C.
 *
 * @module
 */
import { type BenchOptions, parseOptions, usage } from "./options.ts";
import { installSignalCleanup, killAllProcesses, setKeepWorkDirs } from "./process.ts";
import { type BenchReport, computeFigures, describeMachine, renderTable } from "./report.ts";
import { progress, runBench } from "./runner.ts";

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
    console.error(
      `dlock bench: ${error instanceof Error ? error.message : String(error)}\n\n${usage}`,
    );
    return 2;
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
    if (options.output !== null) await Deno.writeTextFile(options.output, json + "\n");
    console.log(options.json ? json : renderTable(report));
    return systems.some((system) => system.status === "failed") ? 1 : 0;
  } finally {
    await killAllProcesses();
  }
}

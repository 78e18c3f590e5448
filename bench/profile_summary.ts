/**
 * Summarises V8 CPU profiles (`deno run --cpu-prof`, e.g. from `deno task bench
 * --cpu-prof DIR`): self time per function and per source file, largest first.
 *
 * Usage: deno run -A bench/profile_summary.ts FILE.cpuprofile... [--top N]
 *
 * @module
 */
import { parseArgs } from "node:util";

type ProfileNode = {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
};

/** The parts of a .cpuprofile this tool reads. */
export type CpuProfile = {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
};

/** Self time in microseconds per key. */
export type SelfTimes = Map<string, number>;

/** Self time per function ("name file:line") and per file, summed over `profiles`. */
export function selfTimes(
  profiles: CpuProfile[],
): { byFunction: SelfTimes; byFile: SelfTimes; totalMicros: number } {
  const byFunction: SelfTimes = new Map();
  const byFile: SelfTimes = new Map();
  let totalMicros = 0;
  for (const profile of profiles) {
    const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
    profile.samples.forEach((nodeId, index) => {
      const micros = profile.timeDeltas[index] ?? 0;
      const node = nodes.get(nodeId);
      if (node === undefined) return;
      const frame = node.callFrame;
      const file = shortUrl(frame.url);
      const name = `${frame.functionName || "(anonymous)"} ${file}${
        frame.url ? `:${frame.lineNumber + 1}` : ""
      }`;
      byFunction.set(name, (byFunction.get(name) ?? 0) + micros);
      byFile.set(file, (byFile.get(file) ?? 0) + micros);
      totalMicros += micros;
    });
  }
  return { byFunction, byFile, totalMicros };
}

function shortUrl(url: string): string {
  if (url === "") return "(native/VM)";
  const npm = /registry\.npmjs\.org\/([^/]+(?:\/[^/]+)?)\/[^/]+\/(.*)$/.exec(url);
  if (npm !== null) return `npm:${npm[1]}/${npm[2]}`;
  const local = url.indexOf("/src/");
  if (local >= 0) return url.slice(local + 1);
  return url.replace(/^.*\/ext:/, "ext:").replace(/^file:\/\//, "");
}

function table(title: string, times: SelfTimes, totalMicros: number, top: number): string {
  const rows = [...times.entries()].sort((a, b) => b[1] - a[1]).slice(0, top);
  return [
    title,
    ...rows.map(([key, micros]) =>
      `${(micros / 1000).toFixed(0).padStart(8)} ms ${
        (100 * micros / totalMicros).toFixed(1).padStart(5)
      } %  ${key}`
    ),
  ].join("\n");
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    options: { top: { type: "string", default: "30" } },
    allowPositionals: true,
  });
  if (positionals.length === 0) {
    console.error("Usage: deno run -A bench/profile_summary.ts FILE.cpuprofile... [--top N]");
    Deno.exit(2);
  }
  const profiles = await Promise.all(
    positionals.map(async (path) => JSON.parse(await Deno.readTextFile(path)) as CpuProfile),
  );
  const { byFunction, byFile, totalMicros } = selfTimes(profiles);
  const top = Number(values.top);
  console.log(`${profiles.length} profile(s), ${(totalMicros / 1e6).toFixed(1)} s sampled\n`);
  console.log(table("Self time by file:", byFile, totalMicros, top));
  console.log();
  console.log(table("Self time by function:", byFunction, totalMicros, top));
}

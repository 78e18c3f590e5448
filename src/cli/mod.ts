/**
 * `dlock` subcommand dispatch. Each subcommand lives in its own file exporting
 * `run(args: string[]): Promise<number>` (the exit code); this file only routes.
 *
 * @module
 */
import { assertLimits } from "../limits.ts";

type Subcommand = {
  summary: string;
  load: () => Promise<{ run: (args: string[]) => Promise<number> }>;
};

const subcommands: Record<string, Subcommand> = {
  server: { summary: "run a lock server", load: () => import("./server.ts") },
  client: {
    summary: "interactive client (acquire, write, release, exit)",
    load: () => import("./client.ts"),
  },
  lock: { summary: "run a command while holding a lock", load: () => import("./lock.ts") },
  status: { summary: "show members, leader, term and locks", load: () => import("./status.ts") },
  filewriter: { summary: "run the fenced storage service", load: () => import("./filewriter.ts") },
  cluster: {
    summary: "start/stop a local cluster (up|down|status)",
    load: () => import("./cluster.ts"),
  },
  bench: {
    summary: "benchmark dlock (and etcd, ZooKeeper) locks",
    load: () => import("../../bench/cli.ts"),
  },
};

function usage(): string {
  const lines = Object.entries(subcommands).map(([name, s]) => `  ${name.padEnd(11)} ${s.summary}`);
  return [
    "dlock: a fault-tolerant distributed lock service",
    "",
    "Usage: dlock <command> [options]   (dlock <command> --help for details)",
    "",
    "Commands:",
    ...lines,
  ].join("\n");
}

/** Runs the subcommand named by `args[0]`; returns the process exit code. */
export async function main(args: string[]): Promise<number> {
  assertLimits();
  const [name, ...rest] = args;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    console.log(usage());
    return name === undefined ? 2 : 0;
  }
  if (name === "--version") {
    console.log("dlock 0.1.0");
    return 0;
  }
  const subcommand = subcommands[name];
  if (subcommand === undefined) {
    console.error(`dlock: unknown command '${name}'\n\n${usage()}`);
    return 2;
  }
  const module = await subcommand.load();
  return await module.run(rest);
}

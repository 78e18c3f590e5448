/**
 * Command-line options of `deno task bench` / `dlock bench`.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { type SystemName, systemNames } from "./systems/types.ts";

/** The scenarios: a uncontended, b contended, c failover, d scale. */
export type ScenarioName = "a" | "b" | "c" | "d";
const scenarioNames: readonly ScenarioName[] = ["a", "b", "c", "d"];

/** Everything a bench run needs to know. */
export type BenchOptions = {
  systems: SystemName[];
  scenarios: ScenarioName[];
  /** Measured seconds per run of a and b. */
  seconds: number;
  runs: number;
  /** Client counts of scenario a. */
  clients: number[];
  /** Clients on the hot lock in scenario b. */
  contendedClients: number;
  /** Locks held at once in scenario d. */
  locks: number;
  /** Sessions sharing the locks of scenario d. */
  scaleSessions: number;
  /** Leader kills per run of scenario c. */
  kills: number;
  /** An existing dlock cluster (no kills, no RSS), or null to start one. */
  servers: string[] | null;
  json: boolean;
  smoke: boolean;
  /** Also write the JSON report to this file. */
  output: string | null;
  /** Run the dlock servers with `--cpu-prof` into this directory. */
  cpuProfileDir: string | null;
  /** Keep the clusters' temp dirs (data and server logs). */
  keep: boolean;
  /** Extra arguments for the dlock servers the bench starts (experiments only). */
  dlockServerArgs: string[];
};

/** Usage text of the bench. */
export const usage = `Usage: deno task bench [options]     (or: dlock bench [options])

Runs the same lock scenarios against dlock, etcd and ZooKeeper clusters it starts on
loopback (3 members each, fsync on), and prints every figure with dlock/etcd and
dlock/zookeeper ratios. Install the peers first: bench/install.sh

Scenarios:
  a  uncontended: C clients, each on its own lock: pairs/s, pair latency p50/p99/p999
  b  contended: N clients on one lock: handoffs/s, wait p50/p99/p999, fairness
  c  failover: one client loops while the leader is killed (kill -9): gap median/max
  d  scale: sessions holding many locks: RSS per server, restart-to-serving time

Options:
  --systems LIST     dlock,etcd,zookeeper (default: all three)
  --scenarios LIST   a,b,c,d (default: all)
  --seconds N        measured seconds per run of a and b (default 10)
  --runs N           runs per figure, median and min–max reported (default 3)
  --clients LIST     client counts of scenario a (default 1,16,64)
  --contended N      clients on the hot lock in scenario b (default 16)
  --locks N          locks held in scenario d (default 100000)
  --sessions N       sessions holding them (default 10)
  --kills N          leader kills per run of scenario c (default 5)
  --servers LIST     use an existing dlock cluster (host:port,...): a and b only
  --json             print the JSON report instead of the table
  --output FILE      also write the JSON report to FILE
  --cpu-prof DIR     run the dlock servers with deno --cpu-prof, profiles into DIR
  --keep             keep the clusters' temp dirs (data, server logs) and print them
  --dlock-args ARGS  extra dlock server arguments, space-separated, for experiments
                     (write --dlock-args="--snapshot-entries 100000"); comparisons use defaults
  --smoke            seconds-long check: dlock only, tiny counts, 1 run
  -h, --help         this text`;

/** Parses the arguments; throws an Error with a readable message on a bad value. */
export function parseOptions(args: string[]): BenchOptions | "help" {
  const { values } = parseArgs({
    args,
    options: {
      systems: { type: "string" },
      scenarios: { type: "string" },
      seconds: { type: "string" },
      runs: { type: "string" },
      clients: { type: "string" },
      contended: { type: "string" },
      locks: { type: "string" },
      sessions: { type: "string" },
      kills: { type: "string" },
      servers: { type: "string" },
      json: { type: "boolean", default: false },
      output: { type: "string" },
      "cpu-prof": { type: "string" },
      keep: { type: "boolean", default: false },
      "dlock-args": { type: "string" },
      smoke: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
    allowPositionals: false,
  });
  if (values.help) return "help";
  const smoke = values.smoke;
  const defaults = smoke
    ? {
      systems: "dlock",
      seconds: "1",
      runs: "1",
      clients: "1,4",
      contended: "4",
      locks: "300",
      sessions: "2",
      kills: "1",
    }
    : {
      systems: systemNames.join(","),
      seconds: "10",
      runs: "3",
      clients: "1,16,64",
      contended: "16",
      locks: "100000",
      sessions: "10",
      kills: "5",
    };
  return {
    systems: parseList(values.systems ?? defaults.systems, systemNames, "--systems"),
    scenarios: parseList(values.scenarios ?? "a,b,c,d", scenarioNames, "--scenarios"),
    seconds: parseNumber(values.seconds ?? defaults.seconds, "--seconds", 0.1, 3_600),
    runs: parseInteger(values.runs ?? defaults.runs, "--runs", 1, 100),
    clients: (values.clients ?? defaults.clients).split(",").map((part) =>
      parseInteger(part, "--clients", 1, 10_000)
    ),
    contendedClients: parseInteger(
      values.contended ?? defaults.contended,
      "--contended",
      2,
      10_000,
    ),
    locks: parseInteger(values.locks ?? defaults.locks, "--locks", 1, 1_000_000),
    scaleSessions: parseInteger(values.sessions ?? defaults.sessions, "--sessions", 1, 1_000),
    kills: parseInteger(values.kills ?? defaults.kills, "--kills", 1, 100),
    servers: values.servers === undefined
      ? null
      : values.servers.split(",").filter((s) => s !== ""),
    json: values.json,
    smoke,
    output: values.output ?? null,
    cpuProfileDir: values["cpu-prof"] ?? null,
    keep: values.keep,
    dlockServerArgs: (values["dlock-args"] ?? "").split(" ").filter((arg) => arg !== ""),
  };
}

function parseList<T extends string>(text: string, allowed: readonly T[], flag: string): T[] {
  const items = text.split(",").map((item) => item.trim()).filter((item) => item !== "");
  for (const item of items) {
    if (!(allowed as readonly string[]).includes(item)) {
      throw new Error(
        `Cannot parse ${flag} as it must be a list of ${allowed.join(",")}: received '${item}'`,
      );
    }
  }
  if (items.length === 0) throw new Error(`Cannot parse ${flag} as it is empty`);
  return [...new Set(items)] as T[];
}

function parseNumber(text: string, flag: string, min: number, max: number): number {
  const value = Number(text);
  if (!Number.isFinite(value) || value < min || value > max) {
    throw new Error(
      `Cannot parse ${flag} as it must be a number in ${min}..${max}: received '${text}'`,
    );
  }
  return value;
}

function parseInteger(text: string, flag: string, min: number, max: number): number {
  const value = parseNumber(text, flag, min, max);
  if (!Number.isInteger(value)) {
    throw new Error(`Cannot parse ${flag} as it must be a whole number: received '${text}'`);
  }
  return value;
}

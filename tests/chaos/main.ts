/**
 * `deno task chaos --seconds N --seed S [--servers 3|5] [--clients K] [--faults list]`
 *
 * Runs the real dlock processes under seeded faults and checks the history. Prints the
 * seed, the schedule and a summary table; exits 1 on any violation, crash or liveness
 * failure (with `violations.txt` next to the history), 2 on bad arguments, 3 when the
 * harness itself could not run.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { type ChaosResult, runChaos } from "./run.ts";
import { allFaultKinds, parseFaultList } from "./schedule.ts";
import { formatSummary, writeViolationReport } from "./report.ts";

const usage = `Usage: deno task chaos [options]

  --seconds N        seconds of faults (default 60), followed by a quiet period
  --seed S           seed of the fault schedule and the workers (default: random, printed)
  --servers 3|5      cluster size (default 3)
  --clients K        worker processes (default 4)
  --locks L          lock names the workers share (default 3)
  --faults LIST      comma-separated kinds or 'all' (default all):
                     ${allFaultKinds.join(",")}
  --quiet-seconds Q  healthy seconds at the end in which liveness must return (default 10)
  --ttl-ms MS        session TTL of the workers (default 3000)
  --dir DIR          where history, logs and data go (default: a new temp dir)
  --network auto|off namespaces when root on Linux (default auto); off: loopback only
  --allow-crashes    report crashes of dlock processes without failing the run
  -h, --help`;

function integer(value: string | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  const number = Number(value);
  if (!Number.isSafeInteger(number) || number < 0) {
    throw new Error(`Cannot use ${name} as it must be a whole number: received ${value}`);
  }
  return number;
}

async function main(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      seconds: { type: "string" },
      seed: { type: "string" },
      servers: { type: "string" },
      clients: { type: "string" },
      locks: { type: "string" },
      faults: { type: "string", default: "all" },
      "quiet-seconds": { type: "string" },
      "ttl-ms": { type: "string" },
      dir: { type: "string" },
      network: { type: "string", default: "auto" },
      "allow-crashes": { type: "boolean", default: false },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help === true) {
    console.log(usage);
    return 0;
  }
  let options;
  try {
    const servers = integer(values.servers, "--servers", 3);
    if (servers !== 3 && servers !== 5) {
      throw new Error(`--servers must be 3 or 5: received ${servers}`);
    }
    const network = values.network;
    if (network !== "auto" && network !== "off") throw new Error("--network must be auto or off");
    options = {
      seconds: integer(values.seconds, "--seconds", 60),
      seed: integer(values.seed, "--seed", Math.floor(Math.random() * 1_000_000)),
      servers,
      clients: integer(values.clients, "--clients", 4),
      locks: Math.max(1, integer(values.locks, "--locks", 3)),
      faults: parseFaultList(values.faults),
      quietSeconds: integer(values["quiet-seconds"], "--quiet-seconds", 10),
      sessionTtlMs: integer(values["ttl-ms"], "--ttl-ms", 3_000),
      network: network as "auto" | "off",
      allowCrashes: values["allow-crashes"] === true,
      ...(values.dir !== undefined ? { directory: values.dir } : {}),
    };
  } catch (error) {
    console.error(`chaos: ${error instanceof Error ? error.message : String(error)}\n\n${usage}`);
    return 2;
  }
  console.log(`chaos: seed ${options.seed}`);
  const interrupt = new AbortController();
  const onSignal = () => {
    console.error("chaos: interrupted, cleaning up");
    interrupt.abort();
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  let result: ChaosResult;
  try {
    result = await runChaos({
      ...options,
      log: (line) => console.log(line),
      signal: interrupt.signal,
    });
  } catch (error) {
    console.error(
      `chaos: seed ${options.seed}: the harness failed: ${
        error instanceof Error ? error.stack ?? error.message : String(error)
      }`,
    );
    return interrupt.signal.aborted ? 130 : 3;
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
  }
  console.log(formatSummary(result));
  if (!result.passed) {
    const path = await writeViolationReport(result);
    console.log(`\nchaos: seed ${result.seed} FAILED; report: ${path}`);
    return 1;
  }
  console.log(`\nchaos: seed ${result.seed} passed (history in ${result.directory})`);
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));

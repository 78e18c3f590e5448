/**
 * CI chaos: about two minutes of real processes under faults on fixed seeds, failing on
 * any safety violation or a cluster that does not come back after healing.
 *
 * Network partitions need root on Linux with `ip`; elsewhere the runs use loopback and
 * process faults only, and say so. A crash of any dlock process also fails the test (the
 * servers used to abort inside Deno's `node:http2`; see regression_client_pause_test.ts).
 *
 * Each run is a separate `deno task chaos` process, so its cleanup (namespaces,
 * processes) is exercised exactly as a user runs it.
 */
import assert from "node:assert/strict";
import { networkSupport } from "./netns.ts";

const mainPath = new URL("./main.ts", import.meta.url).pathname;

/** Fixed seeds: (seed, servers). Seconds of faults each, plus an 8 s quiet period. */
const runs: readonly { seed: number; servers: number }[] = [
  { seed: 101, servers: 3 },
  { seed: 202, servers: 5 },
];
const faultSeconds = 45;

async function chaos(seed: number, servers: number): Promise<{ code: number; output: string }> {
  const command = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      mainPath,
      "--seconds",
      `${faultSeconds}`,
      "--seed",
      `${seed}`,
      "--servers",
      `${servers}`,
      "--clients",
      "3",
      "--quiet-seconds",
      "8",
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    // Hard bound: faults + quiet + startup, self-test and shutdown, with slack.
    signal: AbortSignal.timeout((faultSeconds + 8 + 90) * 1000),
  });
  const output = await command.output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    output: decoder.decode(output.stdout) + decoder.decode(output.stderr),
  };
}

for (const { seed, servers } of runs) {
  Deno.test({
    name: `chaos seed ${seed} (${servers} servers, ${faultSeconds}s of faults): no violations`,
    sanitizeOps: false,
    sanitizeResources: false,
    fn: async () => {
      const support = await networkSupport();
      if (!support.available) {
        console.log(
          `chaos seed ${seed}: NO NETWORK PARTITIONS in this run (${support.reason}); ` +
            "process-level faults only",
        );
      }
      const { code, output } = await chaos(seed, servers);
      console.log(output.split("\n").filter((line) => !line.startsWith("nemesis:")).join("\n"));
      assert.match(output, new RegExp(`chaos: seed ${seed}`), "every run prints its seed");
      assert.equal(code, 0, `chaos seed ${seed} failed (exit ${code}); see the report above`);
    },
  });
}

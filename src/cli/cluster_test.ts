import assert from "node:assert/strict";
import { errorLines, leaderLine, parseClusterArgs } from "./cluster.ts";

Deno.test("dlock cluster args: server flags are checked by the rules of dlock server", () => {
  const parsed = parseClusterArgs([
    "up",
    "--session-ttl",
    "20",
    "--election-ms",
    "200",
    "--heartbeat-ms",
    "20",
  ]);
  assert.notEqual(typeof parsed, "number");
  assert.deepEqual((parsed as Exclude<typeof parsed, number>).options.serverFlags, [
    "--session-ttl",
    "20",
    "--election-ms",
    "200",
    "--heartbeat-ms",
    "20",
  ]);
  const bad: [string[], RegExp][] = [
    [
      ["up", "--session-ttl", "0"],
      /Cannot use --session-ttl as it must be 1\.\.300 seconds: received 0/,
    ],
    [["up", "--session-ttl", "301"], /1\.\.300 seconds: received 301/],
    [["up", "--election-ms", "0"], /Cannot use --election-ms as it must be a positive integer/],
    [["up", "--heartbeat-ms", "x"], /--heartbeat-ms as it must be a positive integer: received x/],
    [["up", "--election-ms", "50", "--heartbeat-ms", "50"], /at least twice --heartbeat-ms/],
  ];
  for (const [args, message] of bad) {
    assert.throws(() => parseClusterArgs(args), message, args.join(" "));
  }
});

Deno.test("dlock cluster: errorLines shows the cause from this run, not the help after it", async () => {
  const path = await Deno.makeTempFile();
  try {
    await Deno.writeTextFile(path, "10:00:00.000 ERROR Cannot start: an earlier run\n");
    const start = (await Deno.stat(path)).size;
    const help = Array.from({ length: 40 }, (_, i) => `  --option-${i}   help line`).join("\n");
    await Deno.writeTextFile(
      path,
      `dlock server: Cannot use --session-ttl as it must be 1..300 seconds: received 0\n\n${help}\n`,
      { append: true },
    );
    assert.equal(
      await errorLines(path, start),
      "dlock server: Cannot use --session-ttl as it must be 1..300 seconds: received 0",
    );
    await Deno.writeTextFile(path, '{"level":"error","msg":"Cannot start: port in use"}\n', {
      append: true,
    });
    assert.match(await errorLines(path, start), /port in use/);
    // No error line: the last lines.
    const quiet = await Deno.makeTempFile();
    await Deno.writeTextFile(quiet, "a\nb\nc\nd\ne\nf\ng\n");
    assert.equal(await errorLines(quiet, 0), "c\nd\ne\nf\ng");
    await Deno.remove(quiet);
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("dlock cluster: the leader line says (none) when no leader is known", () => {
  assert.equal(leaderLine({ leader: "", term: 1 }), "leader (none), term 1");
  assert.equal(leaderLine({ leader: "127.0.0.1:5001", term: 4 }), "leader 127.0.0.1:5001, term 4");
});

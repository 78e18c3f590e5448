import assert from "node:assert/strict";

// The storage bench is a tool, run by hand; this keeps its quickest mode from rotting.
Deno.test("kv_bench --fsync --quick times the three kinds of durable write", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dlock_kv_bench_test_" });
  try {
    const output = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "--unstable-kv",
        new URL("./kv_bench.ts", import.meta.url).pathname,
        "--fsync",
        "--quick",
        "--dir",
        dir,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stdout = new TextDecoder().decode(output.stdout);
    assert.equal(output.code, 0, new TextDecoder().decode(output.stderr));
    const lines = stdout.split("\n").filter((line) => / p50 \d+\.\d{3} ms, p90 /.test(line));
    assert.deepEqual(
      lines.map((line) => line.split(":")[0]!.trim()),
      [
        "kv.set of 120 B",
        "write + fdatasync, appending",
        "write + fdatasync, preallocated file",
      ],
    );
    for (const line of lines) assert.match(line, /\(400 writes\)$/);
    // The bench removes its store: only the empty parent dir is left.
    assert.deepEqual([...Deno.readDirSync(dir)], []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

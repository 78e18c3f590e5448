/**
 * Regression test for the first bug chaos found (seeds 1, 2, 4, 5, 101): a client process
 * paused (SIGSTOP) for longer than its session TTL and then resumed makes a lock server
 * abort inside Deno's `node:http2`:
 *
 *   deno: nghttp2/lib/nghttp2_session.c:2402: int find_stream_on_goaway_func(void *,
 *   void *): Assertion `stream->closed_next == NULL' failed.   (exit 134, SIGABRT)
 *
 * On resume the client library presumes its session lost and resets its gRPC connection;
 * the server receives the GOAWAY and the process dies (upstream: denoland/deno#36788). A
 * crashed leader costs a failover; two servers crashing together (seen) cost the quorum.
 *
 * Real processes on loopback: 3 servers, a filewriter, three chaos workers on one lock;
 * in each of ten rounds one of them (in turn) is paused for TTL + 1.5 s and resumed,
 * while the other two keep the servers busy. Fails when any server exits on its own
 * (reproduced at 10:40 UTC: server-1 and server-2 both exited 134, SIGABRT), or when
 * a worker makes no progress after the last resume.
 *
 * Fixed by the native client protocol (src/server/native.ts,
 * src/client/_native_connection.ts): the client library speaks no HTTP/2 by default,
 * so it sends no GOAWAY; the server's frontend also drops the GOAWAYs of gRPC clients.
 * The abort is a race: against the code before the fix this test failed in about one
 * run in three (servers exited 134), so a pass is weak evidence and a failure is a bug.
 */
import assert from "node:assert/strict";
import { Cluster } from "./cluster.ts";
import { ManagedProcess } from "./processes.ts";
import { sleep } from "./nemesis.ts";

const workerPath = new URL("./worker.ts", import.meta.url).pathname;
const ttlMs = 2_000;
const rounds = 10;

Deno.test({
  name: "a client paused past its TTL and resumed does not crash any server",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const directory = await Deno.makeTempDir({ prefix: "dlock-chaos-regression-" });
    const cluster = await Cluster.create({
      servers: 3,
      directory,
      sessionTtlMs: ttlMs,
      lab: null,
      recordProcess: () => {},
    });
    // Three workers contend for one lock, so the paused one holds or waits for it.
    const workers = ["w0", "w1", "w2"].map((name) =>
      new ManagedProcess(name, [
        Deno.execPath(),
        "run",
        "-A",
        workerPath,
        "--name",
        name,
        "--servers",
        cluster.serverAddresses.join(","),
        "--filewriter",
        cluster.filewriterAddress,
        "--locks",
        "lock0",
        "--history",
        `${directory}/history-${name}.jsonl`,
        "--deadline-ms",
        `${Date.now() + 120_000}`,
        "--ttl-ms",
        `${ttlMs}`,
      ], `${directory}/${name}.log`)
    );
    try {
      await cluster.start(30_000);
      for (const each of workers) each.start();
      await sleep(3_000);
      let lastResumeMs = 0;
      for (let round = 0; round < rounds; round += 1) {
        // One worker at a time, so the other two keep the servers busy meanwhile.
        const paused = workers[round % workers.length] as ManagedProcess;
        paused.pause();
        await sleep(ttlMs + 1_500);
        paused.resume();
        lastResumeMs = Date.now();
        await sleep(2_500);
      }
      const crashes = [cluster.filewriter, ...cluster.servers].flatMap((p) => p.unexpectedExits);
      assert.deepEqual(
        crashes.map((c) => `${c.name} exit ${c.code} ${c.signal ?? ""}`),
        [],
        `servers crashed; logs in ${directory}`,
      );
      // The workers kept working after the last resume: every one of them acquired again.
      const stalled = new Set(["w0", "w1", "w2"]);
      for (const waitUntilMs = Date.now() + 10_000; stalled.size > 0 && Date.now() < waitUntilMs;) {
        for (const name of [...stalled]) {
          const text = await Deno.readTextFile(`${directory}/history-${name}.jsonl`);
          const acquired = text.split("\n").some((line) => {
            if (!line.startsWith("{")) return false;
            const event = JSON.parse(line) as { type?: string; op?: string; timeMs?: number };
            return event.type === "ok" && event.op === "acquire" &&
              (event.timeMs ?? 0) >= lastResumeMs;
          });
          if (acquired) stalled.delete(name);
        }
        if (stalled.size > 0) await sleep(250);
      }
      assert.deepEqual([...stalled], [], `workers made no progress; logs in ${directory}`);
    } finally {
      await Promise.all(workers.map((each) => each.kill()));
      await cluster.killAll();
    }
  },
});

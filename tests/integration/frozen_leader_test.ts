/**
 * A leader that stops answering without closing its connections (SIGSTOP here; a frozen
 * VM, a machine that lost power, a cable pulled between client and server alike): the
 * client must notice on its own, since no connection reset tells it, and follow the new
 * leader within about two seconds, whatever its session TTL.
 */
import assert from "node:assert/strict";
import { connect, type DlockClient } from "../../src/client/mod.ts";
import { sleep, startCluster } from "./_harness.ts";

Deno.test({
  name: "a frozen leader: a client with a 10 s TTL follows the new leader within 2.5 s",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const cluster = await startCluster({ electionMs: 300, heartbeatMs: 50 });
    let client: DlockClient | null = null;
    let running = true;
    let frozenIndex = -1;
    try {
      client = await connect(cluster.addresses, { name: "looper", ttlMs: 10_000 });
      const successes: number[] = [];
      const looping = (async () => {
        while (running) {
          const lock = await client!.acquire("k");
          await lock.release();
          successes.push(performance.now());
        }
      })();
      looping.catch(() => {}); // Awaited below; fails once the client closes after a failure.
      await sleep(1_000);
      assert.ok(successes.length > 10, `the loop runs (${successes.length} pairs)`);
      const leader = (await cluster.waitForLeader()).leader;
      frozenIndex = cluster.indexOf(leader);
      const frozenAt = performance.now();
      cluster.servers[frozenIndex]!.signal("SIGSTOP");
      const deadline = frozenAt + 10_000;
      while (performance.now() < deadline && !successes.some((at) => at > frozenAt + 50)) {
        await sleep(20);
      }
      const resumedAt = successes.find((at) => at > frozenAt + 50);
      assert.ok(resumedAt !== undefined, "the loop resumed within 10 s");
      const gapMs = Math.round(resumedAt - frozenAt);
      assert.ok(gapMs < 2_500, `the loop resumed ${gapMs} ms after the leader froze`);
      running = false;
      await looping;
    } finally {
      running = false;
      if (frozenIndex >= 0) cluster.servers[frozenIndex]?.signal("SIGCONT");
      await client?.close().catch(() => {});
      await cluster.stop();
    }
  },
});

/**
 * Real processes and real fsync: kill -9 of the leader elects a new one quickly with the
 * lock state intact; kill -9 of every server and a restart on the same data
 * directories keeps locks, queues and tokens; SIGTERM of a leader hands leadership over
 * and exits 0.
 */
import assert from "node:assert/strict";
import { delay, TestCluster } from "./_cluster.ts";

type LockView = {
  name: string;
  holderSession: number;
  token: number;
  waiters: { sessionId: number }[];
};

Deno.test({
  name: "server: kill -9 of the leader, then of all three, keeps locks, queues and tokens",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const cluster = await TestCluster.create(3);
    try {
      cluster.startAll();
      let leaderAddress = await cluster.waitForLeader();
      let leader = cluster.client(leaderAddress);
      const a = await leader.call("OpenSession", { clientName: "a", ttlMs: 60_000, openKey: "ka" });
      const b = await leader.call("OpenSession", { clientName: "b", ttlMs: 60_000, openKey: "kb" });
      // A short-TTL session, last kept alive just before the leader dies.
      const short = await leader.call("OpenSession", {
        clientName: "short",
        ttlMs: 2_000,
        openKey: "ks",
      });
      const grant = await leader.call("Acquire", {
        sessionId: a.sessionId,
        lock: "x",
        requestId: 1,
        wait: true,
      });
      assert.equal(grant.acquired, true);
      // b waits in the queue (the call stays open; the leader dies under it).
      leader.call(
        "Acquire",
        { sessionId: b.sessionId, lock: "x", requestId: 1, wait: true },
        60_000,
      )
        .catch(() => {});
      await delay(200);

      // kill -9 the leader: a new one within ~2 s, with the lock and the queue intact.
      const keepAlive = leader.stream();
      keepAlive.write({ callId: 1, keepAlive: { sessionId: short.sessionId } });
      await new Promise((resolve) => keepAlive.once("data", resolve));
      keepAlive.on("error", () => {});
      keepAlive.cancel();
      const killedAt = Date.now();
      await cluster.kill(cluster.indexOf(leaderAddress));
      const survivors = cluster.servers.map((_, index) => index).filter((index) =>
        cluster.servers[index]?.child !== null
      );
      leaderAddress = await cluster.waitForLeader(5_000, survivors);
      const failoverMs = Date.now() - killedAt;
      assert.ok(failoverMs < 2_500, `failover took ${failoverMs} ms`);
      leader = cluster.client(leaderAddress);
      let status = await leader.call("Status", {});
      let lock = (status.locks as LockView[]).find((entry) => entry.name === "x");
      assert.equal(lock?.holderSession, a.sessionId);
      assert.equal(lock?.token, grant.token);
      assert.deepEqual(lock?.waiters.map((waiter) => waiter.sessionId), [b.sessionId]);
      // The short session outlives its TTL counted from the last keepalive: the new
      // leader gave it a fresh TTL (DESIGN.md invariant 8).
      await delay(Math.max(0, killedAt + 2_300 - Date.now()));
      const stream = leader.stream();
      stream.write({ callId: 1, keepAlive: { sessionId: short.sessionId } });
      const renewed = await new Promise<Record<string, unknown>>((resolve) =>
        stream.once("data", resolve)
      );
      stream.on("error", () => {});
      stream.cancel();
      assert.equal((renewed.keepAlive as { error: unknown }).error, null, JSON.stringify(renewed));
      // The session survives the leader change (fresh TTL), keepalive works.
      const kept = await leader.call("Acquire", {
        sessionId: a.sessionId,
        lock: "y",
        requestId: 2,
      });
      assert.ok(kept.acquired && kept.token > grant.token);

      // kill -9 all, restart on the same data dirs: everything is intact.
      for (const index of survivors) await cluster.kill(index);
      cluster.startAll();
      leaderAddress = await cluster.waitForLeader();
      leader = cluster.client(leaderAddress);
      // The new leader's first entry commits every entry before it; wait until applied.
      const deadline = Date.now() + 5_000;
      do {
        status = await leader.call("Status", {});
        lock = (status.locks as LockView[]).find((entry) => entry.name === "x");
        if (lock !== undefined && status.lockCount === 2) break;
        await delay(50);
      } while (Date.now() < deadline);
      assert.equal(lock?.holderSession, a.sessionId);
      assert.equal(lock?.token, grant.token);
      assert.deepEqual(lock?.waiters.map((waiter) => waiter.sessionId), [b.sessionId]);
      // Sessions a and b (TTL 60 s) survive the restart. The 2 s session has no keepalives
      // any more and may expire once the new leader's fresh TTL runs out, depending on how
      // long the restart and the election took, so it is not counted here.
      const sessionIds = (status.sessions as { id: number }[]).map((session) => session.id);
      assert.ok(sessionIds.includes(a.sessionId), `session a survives: ${sessionIds}`);
      assert.ok(sessionIds.includes(b.sessionId), `session b survives: ${sessionIds}`);
      // Release hands x to b with a token above every earlier one.
      await leader.call("Release", { sessionId: a.sessionId, lock: "x", requestId: 3 });
      const retried = await leader.call("Acquire", {
        sessionId: b.sessionId,
        lock: "x",
        requestId: 1,
        wait: true,
      });
      assert.equal(retried.acquired, true);
      assert.ok(retried.token > kept.token, "tokens keep increasing across restarts");

      // SIGTERM of the leader: it hands leadership over and exits 0.
      const stopped = await cluster.kill(cluster.indexOf(leaderAddress), "SIGTERM");
      assert.equal(stopped.code, 0);
      const rest = cluster.servers.map((_, index) => index).filter((index) =>
        cluster.servers[index]?.child !== null
      );
      const next = await cluster.waitForLeader(3_000, rest);
      assert.notEqual(next, leaderAddress);
    } catch (error) {
      console.error(cluster.logs());
      throw error;
    } finally {
      await cluster.stop();
    }
  },
});

Deno.test({
  name: "server: a corrupt or foreign data directory is refused with exit code 1",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const cluster = await TestCluster.create(3);
    const other = await TestCluster.create(3);
    try {
      // A store of another cluster (other members) in server 0's data dir.
      other.start(0);
      // Its store exists once it logs that it serves (a fixed delay was too short for
      // a loaded machine: the rename below then found no directory).
      for (const started = Date.now(); !/serving on/.test(other.servers[0]!.log.join(""));) {
        assert.ok(Date.now() - started < 30_000, "the other cluster's server did not start");
        await delay(50);
      }
      await other.kill(0, "SIGTERM");
      await Deno.rename(other.servers[0]!.dataDir, cluster.servers[0]!.dataDir);
      cluster.start(0);
      const foreign = await cluster.exited(0);
      assert.equal(foreign.code, 1);
      assert.match(cluster.servers[0]!.log.join(""), /Cannot start as the data directory/);

      // Garbage in place of the store.
      await Deno.remove(cluster.servers[0]!.dataDir, { recursive: true });
      await Deno.mkdir(cluster.servers[0]!.dataDir, { recursive: true });
      await Deno.writeTextFile(
        `${cluster.servers[0]!.dataDir}/raft.kv`,
        "not a database ".repeat(500),
      );
      cluster.start(0);
      const corrupt = await cluster.exited(0);
      assert.equal(corrupt.code, 1);
      assert.match(cluster.servers[0]!.log.join(""), /Cannot start as the data directory/);
    } finally {
      await cluster.stop();
      await other.stop();
    }
  },
});

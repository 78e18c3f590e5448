/**
 * Real processes: with a small snapshot interval the leader compacts its log, a
 * follower that was down catches up from a snapshot, and a restart of every server
 * restores from snapshots plus the log after them.
 */
import assert from "node:assert/strict";
import { delay, TestCluster } from "./_cluster.ts";

type Status = Record<string, unknown> & {
  appliedIndex: number;
  lockCount: number;
  sessionCount: number;
  locks: { name: string; holderSession: number; token: number }[];
};

Deno.test({
  name: "server: snapshots compact the log, catch up a lagging follower and survive restarts",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const cluster = await TestCluster.create(3);
    const args = ["--snapshot-entries", "20"];
    try {
      for (let index = 0; index < 3; index++) cluster.start(index, args);
      let leaderAddress = await cluster.waitForLeader();
      const lagging = cluster.servers.findIndex((server) => server.address !== leaderAddress);
      await cluster.kill(lagging);
      const leader = cluster.client(leaderAddress);
      const session = await leader.call("OpenSession", {
        clientName: "s",
        ttlMs: 60_000,
        openKey: "ks",
      });
      let requestId = 1;
      const tokens = new Map<string, number>();
      for (let round = 0; round < 30; round++) {
        const lock = `lock-${round % 7}`;
        const grant = await leader.call("Acquire", {
          sessionId: session.sessionId,
          lock,
          requestId: requestId++,
        });
        tokens.set(lock, grant.token);
        if (round % 7 !== 3) {
          await leader.call("Release", {
            sessionId: session.sessionId,
            lock,
            requestId: requestId++,
          });
          tokens.delete(lock);
        }
      }
      const expected = await leader.call("Status", {}) as Status;
      assert.ok(expected.appliedIndex > 40);

      // The lagging follower restarts and catches up (the log it missed is compacted).
      cluster.start(lagging, args);
      const follower = cluster.client(cluster.servers[lagging]!.address);
      const deadline = Date.now() + 10_000;
      let seen: Status | null = null;
      while (Date.now() < deadline) {
        seen = await follower.call("Status", {}).catch(() => null) as Status | null;
        if (seen !== null && seen.appliedIndex >= expected.appliedIndex) break;
        await delay(50);
      }
      assert.ok(seen !== null && seen.appliedIndex >= expected.appliedIndex, "follower caught up");
      assert.deepEqual(seen.locks, expected.locks);
      assert.match(
        cluster.servers[lagging]!.log.join(""),
        /restored the lock state from a snapshot/,
      );

      // Restart everything: state comes back from snapshot + log.
      for (let index = 0; index < 3; index++) await cluster.kill(index);
      for (let index = 0; index < 3; index++) cluster.start(index, args);
      leaderAddress = await cluster.waitForLeader();
      let restored: Status | null = null;
      const restartDeadline = Date.now() + 10_000;
      while (Date.now() < restartDeadline) {
        restored = await cluster.client(leaderAddress).call("Status", {}) as Status;
        if (restored.appliedIndex > expected.appliedIndex) break;
        await delay(50);
      }
      assert.deepEqual(restored?.locks, expected.locks);
      assert.equal(restored?.sessionCount, 1);
      const next = await cluster.client(leaderAddress).call("Acquire", {
        sessionId: session.sessionId,
        lock: "fresh",
        requestId: requestId++,
      });
      assert.ok(next.token > Math.max(...tokens.values()));
    } catch (error) {
      console.error(cluster.logs());
      throw error;
    } finally {
      await cluster.stop();
    }
  },
});

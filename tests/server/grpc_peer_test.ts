/**
 * `--peer-transport grpc`: Raft traffic between servers over gRPC client streams on the
 * member port (the alternative to the default TCP peer links). Real processes: three
 * servers elect a leader, replicate grants, and a waiter is granted on release.
 */
import assert from "node:assert/strict";
import { connect } from "../../src/client/mod.ts";
import { TestCluster } from "./_cluster.ts";

Deno.test({
  name: "server: a cluster with gRPC peer links elects a leader and hands a lock over",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const cluster = await TestCluster.create(3);
    try {
      for (let index = 0; index < 3; index++) cluster.start(index, ["--peer-transport", "grpc"]);
      const leader = await cluster.waitForLeader();
      assert.match(cluster.logs(), /gRPC on 127\.0\.0\.1:\d+/);
      const addresses = cluster.servers.map((server) => server.address);
      const a = await connect(addresses, { name: "a", ttlMs: 10_000 });
      const b = await connect(addresses, { name: "b", ttlMs: 10_000 });
      try {
        assert.equal(a.leader, leader);
        const first = await a.acquire("x");
        const waiting = b.acquire("x", { timeoutMs: 10_000 });
        await first.release();
        const second = await waiting;
        assert.ok(second.token > first.token, `${second.token} > ${first.token}`);
        // Every member applied the grant: the followers report the same holder.
        const followers = addresses.filter((address) => address !== leader);
        for (const follower of followers) {
          const deadline = Date.now() + 5_000;
          let holder = 0;
          while (Date.now() < deadline) {
            const status = await cluster.client(follower).call("Status", {});
            const lock = (status.locks as { name: string; holderSession: number }[])
              .find((entry) => entry.name === "x");
            holder = lock?.holderSession ?? 0;
            if (holder === b.sessionId) break;
            await new Promise((resolve) => setTimeout(resolve, 50));
          }
          assert.equal(holder, b.sessionId, `follower ${follower} applied the grant`);
        }
        await second.release();
      } finally {
        await a.close();
        await b.close();
      }
    } finally {
      await cluster.stop();
    }
  },
});

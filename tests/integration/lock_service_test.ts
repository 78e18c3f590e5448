/**
 * Issue 3's "done when", with real processes: servers started with the original
 * command line, clients through the library (in this process) or as separate
 * processes (`_agent.ts`) where a client must be killed.
 */
import assert from "node:assert/strict";
import {
  connect,
  type DlockClient,
  InvalidArgumentError,
  type LockHandle,
  type StatusResponse,
} from "../../src/client/mod.ts";
import { StreamConnection } from "../../src/client/_connection.ts";
import {
  Agent,
  eventually,
  handled,
  sleep,
  startCluster,
  type TestCluster,
  traceLogger,
  withTimeout,
} from "./_harness.ts";

const processTest = { sanitizeOps: false, sanitizeResources: false };

async function leaderStatus(cluster: TestCluster): Promise<StatusResponse> {
  return await cluster.waitForLeader(20_000);
}

function lockInfo(status: StatusResponse, name: string) {
  return status.locks.find((lock) => lock.name === name);
}

async function closeAll(clients: (DlockClient | null)[]): Promise<void> {
  await Promise.all(clients.map((client) => client?.close().catch(() => {})));
}

Deno.test({
  name: "3 servers elect a leader; 3 contending clients get FIFO grants with increasing tokens",
  ...processTest,
  async fn(t) {
    const cluster = await startCluster();
    const clients: DlockClient[] = [];
    try {
      await t.step("a leader is elected and every member is listed", async () => {
        const status = await leaderStatus(cluster);
        assert.equal(status.role, "leader");
        assert.deepEqual(
          status.members.map((m) => m.address).sort(),
          [...cluster.addresses].sort(),
        );
        assert.equal(status.members.filter((m) => m.isLeader).length, 1);
      });
      for (const name of ["c1", "c2", "c3"]) {
        // Each client is given one (different) server: discovery finds the leader.
        const address = cluster.addresses[clients.length] as string;
        clients.push(await connect([address], { name, ttlMs: 5_000 }));
      }
      const [c1, c2, c3] = clients as [DlockClient, DlockClient, DlockClient];

      await t.step("waiters are granted in the order they queued", async () => {
        const first = await c1.acquire("fifo");
        const granted: string[] = [];
        const second = handled(c2.acquire("fifo").then((lock) => (granted.push("c2"), lock)));
        await eventually(
          async () => {
            const waiters = lockInfo(await c1.status(), "fifo")?.waiters ?? [];
            return waiters.length === 1 ? true : undefined;
          },
          10_000,
          "c2 queued",
        );
        const third = handled(c3.acquire("fifo").then((lock) => (granted.push("c3"), lock)));
        const queued = await eventually(
          async () => {
            const waiters = lockInfo(await c1.status(), "fifo")?.waiters ?? [];
            return waiters.length === 2 ? waiters : undefined;
          },
          10_000,
          "c3 queued",
        );
        assert.deepEqual(queued.map((w) => w.sessionId), [c2.sessionId, c3.sessionId]);
        assert.deepEqual(queued.map((w) => w.clientName), ["c2", "c3"]);
        await first.release();
        const secondLock = await withTimeout(second, 10_000, "c2's grant");
        await sleep(200);
        assert.deepEqual(granted, ["c2"], "c3 still waits while c2 holds");
        assert.ok(secondLock.token > first.token);
        await secondLock.release();
        const thirdLock = await withTimeout(third, 10_000, "c3's grant");
        assert.deepEqual(granted, ["c2", "c3"]);
        assert.ok(thirdLock.token > secondLock.token);
        await thirdLock.release();
      });

      await t.step("contention: mutual exclusion and strictly increasing tokens", async () => {
        const tokens: number[] = [];
        let holders = 0;
        const rounds = 5;
        await Promise.all(clients.map(async (client) => {
          for (let round = 0; round < rounds; round++) {
            const lock = await withTimeout(client.acquire("hot"), 20_000, `${client.name}'s grant`);
            holders++;
            assert.equal(holders, 1, "one holder at a time");
            tokens.push(lock.token);
            await sleep(5);
            holders--;
            await lock.release();
          }
        }));
        assert.equal(tokens.length, rounds * clients.length);
        for (let i = 1; i < tokens.length; i++) {
          assert.ok(
            (tokens[i] as number) > (tokens[i - 1] as number),
            `tokens increase: ${tokens}`,
          );
        }
      });

      await t.step("a cancelled or timed-out wait leaves the queue", async () => {
        const held = await c1.acquire("patience");
        const controller = new AbortController();
        const cancelled = handled(c2.acquire("patience", { signal: controller.signal }));
        await eventually(
          async () => {
            const waiters = lockInfo(await c1.status(), "patience")?.waiters ?? [];
            return waiters.length === 1 ? true : undefined;
          },
          10_000,
          "c2 queued",
        );
        controller.abort();
        await assert.rejects(cancelled, (error: Error) => error.name === "AbortError");
        const startedMs = performance.now();
        await assert.rejects(
          c3.acquire("patience", { timeoutMs: 400 }),
          (error: Error) => error.name === "TimeoutError",
        );
        assert.ok(performance.now() - startedMs >= 350, "waited for the timeout");
        await eventually(
          async () => {
            const waiters = lockInfo(await c1.status(), "patience")?.waiters ?? [];
            return waiters.length === 0 ? true : undefined;
          },
          10_000,
          "the queue emptied",
        );
        await held.release();
        const free = await c3.tryAcquire("patience");
        assert.ok(free !== null, "nobody was granted the lock behind our back");
        await free.release();
      });

      await t.step(
        "bad inputs get their specific errors and the servers keep serving",
        async () => {
          const [c1] = clients as [DlockClient];
          for (const name of ["", "x".repeat(257), "bad\u0001name", "tab\tname"]) {
            await assert.rejects(
              c1.acquire(name),
              InvalidArgumentError,
              `lock name ${JSON.stringify(name)}`,
            );
          }
          await assert.rejects(
            connect(cluster.addresses, { name: "short", ttlMs: 500 }),
            InvalidArgumentError,
          );
          await assert.rejects(
            connect(cluster.addresses, { name: "long", ttlMs: 300_001 }),
            InvalidArgumentError,
          );
          const status = await c1.status();
          const raw = new StreamConnection(status.leader);
          try {
            const unknown = await raw.call({
              acquire: {
                sessionId: 987_654_321,
                lock: "x",
                requestId: 1,
                wait: false,
                timeoutMs: 0,
              },
            }, 5_000).outcome;
            assert.equal(unknown.kind, "response");
            assert.equal(
              unknown.kind === "response" && unknown.response.error?.reason,
              "SESSION_EXPIRED",
            );
            const holder = await c1.acquire("owned");
            const opened = await raw.call({
              openSession: { clientName: "raw", ttlMs: 5_000, openKey: crypto.randomUUID() },
            }, 5_000).outcome;
            const sessionId = opened.kind === "response"
              ? opened.response.openSession?.sessionId ?? 0
              : 0;
            assert.ok(sessionId > 0);
            const release = await raw.call({
              release: { sessionId, lock: "owned", requestId: 1, token: 0 },
            }, 5_000).outcome;
            assert.equal(
              release.kind === "response" && release.response.error?.reason,
              "NOT_HOLDER",
            );
            const own = await raw.call({
              acquire: { sessionId, lock: "raw-owned", requestId: 2, wait: false, timeoutMs: 0 },
            }, 5_000).outcome;
            const ownToken = own.kind === "response" ? own.response.acquire?.token ?? 0 : 0;
            assert.ok(ownToken > 0);
            const wrongToken = await raw.call({
              release: { sessionId, lock: "raw-owned", requestId: 3, token: ownToken + 1 },
            }, 5_000).outcome;
            assert.equal(
              wrongToken.kind === "response" && wrongToken.response.error?.reason,
              "NOT_HOLDER",
            );
            await raw.call({ closeSession: { sessionId, requestId: 4 } }, 5_000).outcome;
            await holder.release();
          } finally {
            raw.close();
          }
          for (const server of cluster.servers) {
            assert.equal(server?.hasExited, false, "no server crashed");
          }
          const after = await c1.status();
          assert.equal(after.members.length, 3);
          const again = await c1.acquire("still-serving");
          await again.release();
        },
      );
    } finally {
      await closeAll(clients);
      await cluster.stop();
    }
  },
});

Deno.test({
  name:
    "kill -9 of the leader: a new leader, the holder keeps its lock, waiters follow its release",
  ...processTest,
  async fn() {
    const cluster = await startCluster();
    let holder: DlockClient | null = null;
    let waiter: DlockClient | null = null;
    const trace: string[] = [];
    try {
      holder = await connect(cluster.addresses, {
        name: "holder",
        ttlMs: 20_000,
        logger: traceLogger("holder", trace),
      });
      waiter = await connect(cluster.addresses, {
        name: "waiter",
        ttlMs: 20_000,
        logger: traceLogger("waiter", trace),
      });
      const lock = await holder.acquire("k");
      let waiterLock: LockHandle | null = null;
      const waiting = handled(waiter.acquire("k").then((granted) => (waiterLock = granted)));
      const before = await eventually(
        async () => {
          const status = await holder!.status();
          return (lockInfo(status, "k")?.waiters.length ?? 0) === 1 ? status : undefined;
        },
        10_000,
        "the waiter queued",
      );
      const oldLeader = before.leader;
      await cluster.killServer(cluster.indexOf(oldLeader));
      const after = await cluster.waitForLeader(20_000, oldLeader);
      assert.notEqual(after.leader, oldLeader);
      const info = await eventually(
        async () => {
          const found = lockInfo(await holder!.status(), "k");
          return found?.holderSession === holder!.sessionId ? found : undefined;
        },
        10_000,
        "the new leader's view of k",
      );
      assert.equal(info.token, lock.token, "same grant, same token");
      assert.deepEqual(info.waiters.map((w) => w.sessionId), [waiter.sessionId]);
      await sleep(1_500); // Several keepalive rounds on the new leader.
      assert.equal(lock.signal.aborted, false, "the holder still holds");
      assert.equal(waiterLock, null, "the waiter is not granted while the holder holds");
      await lock.release();
      const granted = await withTimeout(waiting, 10_000, "the waiter's grant after failover");
      assert.ok(granted.token > lock.token);
      await granted.release();
    } catch (error) {
      console.error(`client trace:\n${trace.join("\n")}\n${await cluster.logs()}`);
      throw error;
    } finally {
      await closeAll([holder, waiter]);
      await cluster.stop();
    }
  },
});

Deno.test({
  name: "kill -9 of a client holding a lock: the next waiter gets it after the TTL",
  ...processTest,
  async fn() {
    const cluster = await startCluster();
    let agent: Agent | null = null;
    let waiter: DlockClient | null = null;
    try {
      const ttlMs = 2_000;
      agent = new Agent(cluster.dir, "doomed", [
        "--servers",
        cluster.addresses.join(","),
        "--name",
        "doomed",
        "--ttl-ms",
        String(ttlMs),
      ]);
      const connected = await agent.next(30_000);
      assert.equal(connected.event, "connected");
      const acquired = await agent.call({ op: "acquire", lock: "k" });
      assert.equal(acquired.ok, true);
      waiter = await connect(cluster.addresses, { name: "waiter", ttlMs: 5_000 });
      const waiting = handled(waiter.acquire("k"));
      await eventually(
        async () => {
          return (lockInfo(await waiter!.status(), "k")?.waiters.length ?? 0) === 1
            ? true
            : undefined;
        },
        10_000,
        "the waiter queued",
      );
      const killedAt = performance.now();
      await agent.kill();
      const granted = await withTimeout(waiting, ttlMs + 8_000, "the grant after the holder's TTL");
      const elapsedMs = performance.now() - killedAt;
      assert.ok(granted.token > Number(acquired.token));
      assert.ok(
        elapsedMs >= ttlMs / 2,
        `not granted before the session could expire (${elapsedMs} ms)`,
      );
      const status = await waiter.status();
      assert.ok(
        !status.sessions.some((s) => s.id === Number(connected.sessionId)),
        "session expired",
      );
      await granted.release();
    } finally {
      await agent?.kill().catch(() => {});
      await closeAll([waiter]);
      await cluster.stop();
    }
  },
});

Deno.test({
  name: "kill -9 of all servers and a restart: locks, queues and tokens are intact",
  ...processTest,
  async fn() {
    const cluster = await startCluster();
    let a: DlockClient | null = null;
    let b: DlockClient | null = null;
    try {
      // A long TTL: the clients ride out the outage without presuming their sessions lost.
      a = await connect(cluster.addresses, { name: "a", ttlMs: 30_000 });
      b = await connect(cluster.addresses, { name: "b", ttlMs: 30_000 });
      const held = await a.acquire("r1");
      const other = await b.acquire("r2");
      const waiting = handled(b.acquire("r1"));
      const before = await eventually(
        async () => {
          const status = await a!.status();
          return (lockInfo(status, "r1")?.waiters.length ?? 0) === 1 ? status : undefined;
        },
        10_000,
        "b queued on r1",
      );
      await Promise.all(cluster.addresses.map((_, index) => cluster.killServer(index)));
      for (let index = 0; index < cluster.addresses.length; index++) cluster.startServer(index);
      const after = await cluster.waitForLeader(30_000);
      const shape = (status: StatusResponse) =>
        status.locks
          .map((lock) => ({
            name: lock.name,
            holder: lock.holderSession,
            token: lock.token,
            waiters: lock.waiters.map((w) => w.sessionId),
          }))
          .sort((x, y) => x.name.localeCompare(y.name));
      assert.deepEqual(shape(after), shape(before));
      assert.deepEqual(
        after.sessions.map((s) => s.id).sort(),
        before.sessions.map((s) => s.id).sort(),
        "sessions survive (with a fresh TTL)",
      );
      assert.equal(held.signal.aborted, false);
      await held.release();
      const granted = await withTimeout(waiting, 15_000, "b's grant after the restart");
      assert.ok(granted.token > held.token && granted.token > other.token);
      await granted.release();
      await other.release();
    } finally {
      await closeAll([a, b]);
      await cluster.stop();
    }
  },
});

Deno.test({
  name: "a session presumed lost during a cluster outage is closed once the cluster is back",
  ...processTest,
  async fn() {
    const cluster = await startCluster();
    let holder: DlockClient | null = null;
    let next: DlockClient | null = null;
    try {
      // The holder presumes its session lost 0.75 TTL after the servers die, and asks the
      // cluster to close it. The cluster stays down for longer than a TTL after that, and
      // on restart the new leader gives every session a fresh TTL: only that close makes
      // the lock free before a whole TTL has passed again.
      // A retry bound below the TTL: the close is not limited to max(TTL, retry bound) (4 s
      // here, over before the cluster is back), it goes on until the cluster answers.
      const ttlMs = 4_000;
      holder = await connect(cluster.addresses, { name: "holder", ttlMs, retryTimeoutMs: 1_000 });
      const lock = await holder.acquire("k");
      const sessionId = holder.sessionId;
      await Promise.all(cluster.addresses.map((_, index) => cluster.killServer(index)));
      await withTimeout(
        new Promise((resolve) => lock.signal.addEventListener("abort", resolve)),
        ttlMs + 2_000,
        "the holder presuming its session lost",
      );
      await sleep(ttlMs + 500);
      for (let index = 0; index < cluster.addresses.length; index++) cluster.startServer(index);
      await cluster.waitForLeader(30_000);
      const backMs = performance.now();
      next = await connect(cluster.addresses, { name: "next", ttlMs: 10_000 });
      const granted = await next.acquire("k", { timeoutMs: ttlMs - 1_000 });
      const waitedMs = performance.now() - backMs;
      assert.ok(granted.token > lock.token, "a newer token");
      const status = await next.status();
      assert.ok(
        !status.sessions.some((session) => session.id === sessionId),
        `the lost session is gone (${waitedMs} ms after the cluster was back)`,
      );
      await withTimeout(holder.close(), 5_000, "the holder's close");
      await granted.release();
    } finally {
      await closeAll([holder, next]);
      await cluster.stop();
    }
  },
});

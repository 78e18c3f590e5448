import assert from "node:assert/strict";
import { FakeClusterWorker } from "./_fake_cluster_test_helper.ts";
import {
  connect,
  DlockError,
  DownstreamUnavailableError,
  NotHolderError,
  SessionExpiredError,
  SessionPresumedLostError,
} from "./mod.ts";

const sanitize = { sanitizeOps: false, sanitizeResources: false };

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

Deno.test({
  name: "client follows the leader hint, multiplexes waits and gets FIFO grants",
  ...sanitize,
  async fn() {
    const cluster = await FakeClusterWorker.start(3);
    await cluster.set({ leaderIndex: 2 });
    try {
      // Only a follower's address is given: discovery and the hint lead to the leader.
      const a = await connect([cluster.addresses[0] as string], { name: "a", ttlMs: 3_000 });
      const b = await connect([cluster.addresses[1] as string], { name: "b", ttlMs: 3_000 });
      try {
        assert.equal(a.leader, cluster.addresses[2]);
        const first = await a.acquire("x");
        assert.equal(await b.tryAcquire("x"), null);
        assert.equal(await a.acquire("x"), first, "asking again returns the current grant");
        const waiting = b.acquire("x");
        waiting.catch(() => {}); // Awaited below; handled now so a rejection fails only this test.
        const other = await a.acquire("y"); // Served while b's acquire is pending.
        assert.ok(other.token > first.token);
        await first.release();
        await first.release(); // Idempotent.
        const second = await withTimeout(waiting, 5_000, "b's grant");
        assert.ok(second.token > other.token);
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

for (const transport of ["native", "grpc"] as const) {
  Deno.test({
    name: `a pending acquire survives a leader change with the same request id (${transport})`,
    ...sanitize,
    async fn() {
      const cluster = await FakeClusterWorker.start(2);
      try {
        const a = await connect(cluster.addresses, { name: "a", ttlMs: 5_000, transport });
        const b = await connect(cluster.addresses, { name: "b", ttlMs: 5_000, transport });
        try {
          const held = await a.acquire("x");
          const waiting = b.acquire("x");
          waiting.catch(() => {}); // Awaited below; handled now so a rejection fails only this test.
          await new Promise((resolve) => setTimeout(resolve, 200));
          const before = (await cluster.received()).filter((r) =>
            r.kind === "acquire" && r.sessionId === b.sessionId
          );
          assert.equal(before.length, 1);
          await cluster.moveLeader(1);
          await new Promise((resolve) => setTimeout(resolve, 500));
          await held.release(); // a also follows the new leader.
          const granted = await withTimeout(waiting, 5_000, "b's grant after failover");
          assert.ok(granted.token > held.token);
          const retries = (await cluster.received()).filter((r) =>
            r.kind === "acquire" && r.sessionId === b.sessionId
          );
          assert.ok(retries.length >= 2, "the acquire was re-issued");
          assert.ok(retries.every((r) => r.requestId === before[0]?.requestId), "same request id");
          assert.equal(b.leader, cluster.addresses[1]);
        } finally {
          await a.close();
          await b.close();
        }
      } finally {
        await cluster.stop();
      }
    },
  });
}

for (const transport of ["native", "grpc"] as const) {
  Deno.test({
    name: `a long wait on a server that answers its probes is left alone (${transport})`,
    ...sanitize,
    async fn() {
      // While calls wait and the server is silent, the connection probes it with a Status
      // (src/client/_connection.ts); answered probes must not break it, so the blocking
      // acquire is sent once and granted on the same connection.
      const cluster = await FakeClusterWorker.start(1);
      try {
        const a = await connect(cluster.addresses, { name: "a", ttlMs: 30_000, transport });
        const b = await connect(cluster.addresses, { name: "b", ttlMs: 30_000, transport });
        try {
          const held = await a.acquire("x");
          const waiting = b.acquire("x");
          waiting.catch(() => {}); // Awaited below; handled now so a rejection fails only this test.
          await new Promise((resolve) => setTimeout(resolve, 3_000));
          await held.release();
          const granted = await withTimeout(waiting, 5_000, "b's grant");
          assert.ok(granted.token > held.token);
          const sent = (await cluster.received()).filter((r) =>
            r.kind === "acquire" && r.sessionId === b.sessionId
          );
          assert.equal(sent.length, 1, "the acquire was sent once: the connection held");
        } finally {
          await a.close();
          await b.close();
        }
      } finally {
        await cluster.stop();
      }
    },
  });
}

Deno.test({
  name: "an aborted acquire sends CancelRequest and rejects with the abort reason",
  ...sanitize,
  async fn() {
    const cluster = await FakeClusterWorker.start(1);
    try {
      const a = await connect(cluster.addresses, { name: "a", ttlMs: 5_000 });
      const b = await connect(cluster.addresses, { name: "b", ttlMs: 5_000 });
      try {
        await a.acquire("x");
        const controller = new AbortController();
        const waiting = b.acquire("x", { signal: controller.signal });
        waiting.catch(() => {}); // Awaited below.
        await new Promise((resolve) => setTimeout(resolve, 200));
        controller.abort();
        await assert.rejects(waiting, (error: Error) => error.name === "AbortError");
        await new Promise((resolve) => setTimeout(resolve, 200));
        assert.equal((await cluster.cancelled()).length, 1);
        await assert.rejects(b.acquire("x", { timeoutMs: 300 }), (error: Error) => {
          return error.name === "TimeoutError";
        });
        // Beyond what a JavaScript timer can wait (with the grace): refused, not a timeout
        // that fires at once (found by hand: 2,147,482,648 ms timed out after 4 ms).
        await assert.rejects(
          b.acquire("y", { timeoutMs: 2_147_482_648 }),
          /timeout must be a whole number of milliseconds from 0 to 2000000000/,
        );
        const long = await b.acquire("y", { timeoutMs: 2_000_000_000 });
        assert.ok(long !== null && long.token > 0, "a free lock with the longest timeout");
        await long.release();
      } finally {
        await a.close();
        await b.close();
      }
    } finally {
      await cluster.stop();
    }
  },
});

Deno.test({
  name: "unconfirmed keepalives abort the client's and the locks' signals",
  ...sanitize,
  async fn() {
    const cluster = await FakeClusterWorker.start(1);
    try {
      const client = await connect(cluster.addresses, { name: "a", ttlMs: 1_200 });
      try {
        const lock = await client.acquire("x");
        const startedMs = performance.now();
        await cluster.set({ answerKeepAlives: false });
        await withTimeout(
          new Promise((resolve) => lock.signal.addEventListener("abort", resolve)),
          3_000,
          "the lock's signal",
        );
        const elapsedMs = performance.now() - startedMs;
        assert.ok(elapsedMs < 1_200, `presumed lost before the TTL (${elapsedMs} ms)`);
        assert.ok(client.signal.aborted);
        assert.ok(client.signal.reason instanceof SessionExpiredError);
        await assert.rejects(lock.release(), NotHolderError);
        await assert.rejects(client.acquire("y"), SessionExpiredError);
      } finally {
        await client.close().catch(() => {});
      }
    } finally {
      await cluster.stop();
    }
  },
});

Deno.test({
  name: "a session presumed lost while the cluster stays unreachable does not end the process",
  ...sanitize,
  async fn() {
    // The client tries to close the lost session on the cluster in the background; when
    // that fails and the application has not called close() yet, the failure must not be
    // an unhandled rejection (which fails this test, and ends a real client process).
    const cluster = await FakeClusterWorker.start(1);
    const client = await connect(cluster.addresses, {
      name: "a",
      ttlMs: 1_000,
      retryTimeoutMs: 300,
      attemptTimeoutMs: 200,
    });
    await cluster.stop();
    await withTimeout(
      new Promise((resolve) => client.signal.addEventListener("abort", resolve)),
      3_000,
      "the session presumed lost",
    );
    assert.ok(client.signal.reason instanceof SessionPresumedLostError);
    // Later calls fail with the same class (README: "pending and later operations").
    await assert.rejects(client.acquire("x"), SessionPresumedLostError);
    await assert.rejects(client.tryAcquire("x"), SessionPresumedLostError);
    // The background close keeps trying in rounds of max(TTL, retry bound) = 1 s; wait past
    // one, so at least one round has failed.
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    // close() gives it one more retry bound, then stops it: it does not wait for the
    // background close's own limit (minutes).
    const closingMs = performance.now();
    await client.close();
    const closeMs = performance.now() - closingMs;
    assert.ok(closeMs < 300 + 1_500, `close() stopped the background close (${closeMs} ms)`);
  },
});

Deno.test({
  name:
    "a session presumed lost is closed once the cluster answers again, however long it was away",
  ...sanitize,
  async fn() {
    // The cluster does not answer for longer than the old background close tried (max(TTL,
    // retry bound) = 1 s): a new leader would give the session a fresh TTL, so only this
    // close frees its locks before a whole TTL has passed again.
    const cluster = await FakeClusterWorker.start(1);
    try {
      const client = await connect(cluster.addresses, {
        name: "a",
        ttlMs: 1_000,
        retryTimeoutMs: 300,
        attemptTimeoutMs: 200,
      });
      try {
        await client.acquire("x");
        await cluster.set({ silent: true });
        await withTimeout(
          new Promise((resolve) => client.signal.addEventListener("abort", resolve)),
          3_000,
          "the session presumed lost",
        );
        assert.ok(client.signal.reason instanceof SessionPresumedLostError);
        await new Promise((resolve) => setTimeout(resolve, 3_000));
        const closesBefore = (await cluster.received()).filter((r) => r.kind === "closeSession");
        assert.equal(closesBefore.length, 0, "nothing answered while the cluster was silent");
        await cluster.set({ silent: false });
        const backMs = performance.now();
        const closed = await withTimeout(
          (async () => {
            for (;;) {
              const closes = (await cluster.received()).filter((r) =>
                r.kind === "closeSession" && r.sessionId === client.sessionId
              );
              if (closes.length > 0) return closes;
              await new Promise((resolve) => setTimeout(resolve, 50));
            }
          })(),
          8_000,
          "the lost session's close after the cluster is back",
        );
        assert.equal(closed.length, 1, "closed once");
        const afterMs = performance.now() - backMs;
        assert.ok(afterMs < 7_000, `closed ${afterMs} ms after the cluster was back`);
      } finally {
        await client.close();
      }
    } finally {
      await cluster.stop();
    }
  },
});

Deno.test({
  name: "connectTimeoutMs bounds opening the session, whatever the retry bound of later calls",
  ...sanitize,
  async fn() {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const deadAddress = `127.0.0.1:${(listener.addr as Deno.NetAddr).port}`;
    listener.close();
    const startedMs = performance.now();
    await assert.rejects(
      connect([deadAddress], { name: "a", retryTimeoutMs: 60_000, connectTimeoutMs: 500 }),
      (error: Error) => error instanceof DlockError && error.reason === "UNAVAILABLE",
    );
    const elapsedMs = performance.now() - startedMs;
    assert.ok(elapsedMs >= 500 && elapsedMs < 5_000, `gave up after ${elapsedMs} ms`);
  },
});

Deno.test({
  name: "a malformed server address or a blank name fails at once, not after retrying",
  ...sanitize,
  async fn() {
    await assert.rejects(
      connect(["127.0.0.1:1"], { name: " " }),
      /the client name must not be empty/,
    );
    for (
      const [address, message] of [
        ["127.0.0.1", /as it has no port: expected HOST:PORT/],
        ["127.0.0.1:99999", /port is out of range/],
        ["a b:1", /expected HOST:PORT/],
      ] as const
    ) {
      const startedMs = performance.now();
      await assert.rejects(
        connect([address], { name: "a" }),
        (error: Error) =>
          error instanceof DlockError && error.reason === "INVALID_ARGUMENT" &&
          message.test(error.message),
      );
      assert.ok(performance.now() - startedMs < 1_000, address);
    }
  },
});

Deno.test({
  name: "an unreachable cluster fails with UNAVAILABLE once the retry bound passes",
  ...sanitize,
  async fn() {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const deadAddress = `127.0.0.1:${(listener.addr as Deno.NetAddr).port}`;
    listener.close(); // Nothing listens there now: connections are refused.
    const startedMs = performance.now();
    await assert.rejects(
      connect([deadAddress], { name: "a", retryTimeoutMs: 600 }),
      (error: Error) =>
        error instanceof DlockError && error.reason === "UNAVAILABLE" &&
        !(error instanceof DownstreamUnavailableError) &&
        /^Cannot open a session as no dlock leader could be reached \(tried \d+ times; retried for [0-9.]+ s; last: /
          .test(error.message),
    );
    const elapsedMs = performance.now() - startedMs;
    assert.ok(elapsedMs >= 600 && elapsedMs < 5_000, `gave up after ${elapsedMs} ms`);
  },
});

Deno.test({
  name: "an operation after a pause past the lease fails locally, before anything is sent",
  ...sanitize,
  async fn() {
    const cluster = await FakeClusterWorker.start(1);
    try {
      const client = await connect(cluster.addresses, { name: "sleeper", ttlMs: 1_000 });
      try {
        const lock = await client.acquire("x");
        // Block this event loop for longer than the lease (0.75 × TTL), as SIGSTOP or a long
        // GC pause would: no watchdog timer can run meanwhile.
        const until = performance.now() + 900;
        while (performance.now() < until) { /* paused */ }
        // The very next operation sees the lease is gone, without waiting for the watchdog.
        assert.equal(lock.signal.aborted, false, "no timer ran during the pause");
        await assert.rejects(() => lock.append("f", "late write"), NotHolderError);
        assert.equal(lock.signal.aborted, true);
        assert.ok(client.signal.reason instanceof SessionExpiredError);
      } finally {
        await client.close().catch(() => {});
      }
    } finally {
      await cluster.stop();
    }
  },
});

Deno.test({
  name: "a leader that answers but cannot reach its filewriter is reported as such, after retrying",
  ...sanitize,
  async fn() {
    // The leader answers every attempt with UNAVAILABLE and a downstream (the filewriter):
    // the client retries as for any UNAVAILABLE, and its final error names the filewriter,
    // not "cannot reach the leader".
    const cluster = await FakeClusterWorker.start(1);
    try {
      const client = await connect(cluster.addresses, {
        name: "writer",
        ttlMs: 5_000,
        retryTimeoutMs: 600,
      });
      try {
        const lock = await client.acquire("x");
        await cluster.set({
          appendError: {
            reason: "UNAVAILABLE",
            message: "Cannot append to f5 as the filewriter at localhost:1 is unreachable",
            leader: "",
            downstream: {
              service: "filewriter",
              address: "localhost:1",
              attempts: 3,
              unreachable: true,
              problem: "fetch failed",
            },
          },
        });
        const error = await lock.append("f5", "data").then(
          () => assert.fail("the append succeeded"),
          (error: unknown) => error,
        );
        assert.ok(error instanceof DownstreamUnavailableError, String(error));
        assert.equal(error.reason, "UNAVAILABLE");
        assert.equal(error.server, cluster.addresses[0]);
        assert.equal(error.downstream.service, "filewriter");
        assert.match(
          error.message,
          new RegExp(
            "^Cannot append to f5 as the filewriter at localhost:1 is unreachable " +
              `\\(the leader ${cluster.addresses[0]} tried 3 times; retried for [0-9.]+ s\\): ` +
              "fetch failed$",
          ),
        );
        const appends = (await cluster.received()).filter((r) => r.kind === "append");
        assert.ok(appends.length >= 2, `retried as any UNAVAILABLE (${appends.length} attempts)`);
      } finally {
        await client.close();
      }
    } finally {
      await cluster.stop();
    }
  },
});

Deno.test({
  name: "a client pointed at an HTTP port (the filewriter's) says so at once, without retrying",
  ...sanitize,
  async fn() {
    const http = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen() {} },
      () => new Response("not dlock"),
    );
    const address = `127.0.0.1:${http.addr.port}`;
    const cluster = await FakeClusterWorker.start(3);
    try {
      const started = performance.now();
      await assert.rejects(
        connect([address], { name: "lost", ttlMs: 3_000 }),
        (error: unknown) => {
          assert.ok(error instanceof DlockError);
          assert.equal(error.reason, "INVALID_ARGUMENT");
          assert.equal(
            error.message,
            `Cannot talk to ${address} as it is not a dlock server ` +
              "(it answered like an HTTP server: is it the filewriter?)",
          );
          return true;
        },
      );
      assert.ok(performance.now() - started < 3_000, "no retrying for the retry timeout");
      // Listed with real servers, the HTTP port is skipped and the others are used.
      const client = await withTimeout(
        connect([address, cluster.addresses[1] as string], { name: "found", ttlMs: 3_000 }),
        5_000,
        "connect past the HTTP port",
      );
      assert.ok(cluster.addresses.includes(client.leader));
      await client.close();
    } finally {
      await cluster.stop();
      await http.shutdown();
    }
  },
});

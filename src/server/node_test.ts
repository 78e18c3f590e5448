/**
 * LockNode with the real Raft core over an in-memory network that can partition a
 * node: a deposed leader fails its pending proposals with NOT_LEADER, and the retry at
 * the new leader (same request id) takes effect exactly once.
 */
import assert from "node:assert/strict";
import { DlockError, DownstreamUnavailableError } from "../errors.ts";
import { FilewriterClient, forwardingFilewriterOptions } from "../filewriter/client.ts";
import { limits } from "../limits.ts";
import type { Entry, HardState, Message, Snapshot } from "../raft/types.ts";
import type { ReceiveHandler, Transport } from "../transport/types.ts";
import { LockNode, type LogStorage } from "./node.ts";
import { testLockNode, type TestNodeOptions } from "./_node_test_helper.ts";

class MemoryStorage implements LogStorage {
  hardState: HardState = { term: 0, vote: null, commit: 0 };
  entries: Entry[] = [];
  save(batch: { hardState?: HardState; entries: readonly Entry[]; snapshot?: Snapshot }) {
    if (batch.hardState !== undefined) this.hardState = batch.hardState;
    const first = batch.entries[0];
    if (first !== undefined) {
      this.entries = this.entries.filter((entry) => entry.index < first.index).concat(
        batch.entries,
      );
    }
    return Promise.resolve();
  }
  saveSnapshotAndCompact(_snapshot: Snapshot) {
    return Promise.resolve();
  }
  close() {}
}

/** A MemoryStorage whose saves can be held in progress (a slow fsync), then released. */
class HeldStorage extends MemoryStorage {
  #held: (() => void)[] | null = null;
  saving = 0;
  hold(): void {
    this.#held = [];
  }
  release(): void {
    const held = this.#held ?? [];
    this.#held = null;
    for (const resume of held) resume();
  }
  override save(batch: { hardState?: HardState; entries: readonly Entry[]; snapshot?: Snapshot }) {
    const held = this.#held;
    if (held === null) return super.save(batch);
    this.saving++;
    return new Promise<void>((resolve) =>
      held.push(() => {
        this.saving--;
        resolve(super.save(batch));
      })
    );
  }
}

class Network {
  readonly handlers = new Map<string, ReceiveHandler>();
  readonly isolated = new Set<string>();
  transport(self: string): Transport {
    return {
      send: (messages: readonly Message[]) => {
        for (const message of messages) {
          if (this.isolated.has(self) || this.isolated.has(message.to)) continue;
          queueMicrotask(() => this.handlers.get(message.to)?.([message]));
        }
      },
      onReceive: (handler: ReceiveHandler) => {
        this.handlers.set(self, handler);
      },
      close: () => Promise.resolve(),
    };
  }
}

async function until<T>(probe: () => T | undefined | null | false, timeoutMs = 5_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Three LockNodes with the real Raft core on `network`, one storage each. */
function makeNodes(
  network: Network,
  storages: readonly LogStorage[],
  electionTicks = 10,
  nowMs?: () => number,
): { members: string[]; nodes: LockNode[] } {
  const members = ["n1", "n2", "n3"];
  let seed = 1;
  const nodes = members.map((id, index) =>
    testLockNode({
      self: id,
      members,
      storage: storages[index]!,
      transport: network.transport(id),
      random: () => (seed = (seed * 16807) % 2147483647) / 2147483647,
      electionTicks,
      ...(nowMs === undefined ? {} : { nowMs }),
      onFatal: (error) => {
        throw error;
      },
    })
  );
  return { members, nodes };
}

Deno.test({
  name: "lock node: a deposed leader fails pending proposals; the retry applies once",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const network = new Network();
    const { members, nodes } = makeNodes(network, [
      new MemoryStorage(),
      new MemoryStorage(),
      new MemoryStorage(),
    ]);
    try {
      for (const node of nodes) node.start();
      const leader = await until(() => nodes.find((node) => node.role === "leader"));
      const opened = await leader.openSession({ clientName: "c", ttlMs: 60_000, openKey: "k" });
      // Cut the leader off; its proposal cannot commit.
      const leaderId = members[nodes.indexOf(leader)]!;
      network.isolated.add(leaderId);
      const pending = leader.acquire({
        sessionId: opened.sessionId,
        lock: "x",
        requestId: 1,
        wait: true,
        timeoutMs: 0,
      });
      const others = nodes.filter((node) => node !== leader);
      const next = await until(() => others.find((node) => node.role === "leader"));
      // The old leader steps down (check quorum) and fails the proposal.
      await assert.rejects(
        pending,
        (error: unknown) => error instanceof DlockError && error.reason === "NOT_LEADER",
      );
      network.isolated.delete(leaderId);
      const granted = await next.acquire({
        sessionId: opened.sessionId,
        lock: "x",
        requestId: 1,
        wait: true,
        timeoutMs: 0,
      });
      assert.equal(granted.acquired, true);
      const again = await next.acquire({
        sessionId: opened.sessionId,
        lock: "x",
        requestId: 1,
        wait: true,
        timeoutMs: 0,
      });
      assert.equal(again.token, granted.token, "the retried request returns the original grant");
      // Every replica converges on one grant.
      await until(() => nodes.every((node) => node.machine.holder("x")?.token === granted.token));
      // Keepalives: only the leader answers; an unknown session is expired.
      await assert.rejects(
        leader === next
          ? Promise.reject(new Error("same"))
          : leader.keepAlive({ sessionId: opened.sessionId }),
        (error: unknown) => error instanceof DlockError && error.reason === "NOT_LEADER",
      );
      assert.equal((await next.keepAlive({ sessionId: opened.sessionId })).ttlMs, 60_000);
      await assert.rejects(
        next.keepAlive({ sessionId: 987_654 }),
        (error: unknown) => error instanceof DlockError && error.reason === "SESSION_EXPIRED",
      );
    } finally {
      for (const node of nodes) await node.stop();
    }
  },
});

Deno.test({
  name:
    "lock node: during its own save a leader sends new appends and grants what the followers commit",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const network = new Network();
    const storages = [new HeldStorage(), new HeldStorage(), new HeldStorage()];
    // A long election timeout (1 s): the held leader sends no heartbeats meanwhile.
    const { nodes } = makeNodes(network, storages, 200);
    try {
      for (const node of nodes) node.start();
      const leader = await until(() => nodes.find((node) => node.role === "leader"));
      const leaderStorage = storages[nodes.indexOf(leader)]!;
      const followerStorages = storages.filter((storage) => storage !== leaderStorage);
      const opened = await leader.openSession({ clientName: "c", ttlMs: 60_000, openKey: "k" });
      const acquire = (lock: string, requestId: number) =>
        leader.acquire({ sessionId: opened.sessionId, lock, requestId, wait: true, timeoutMs: 0 });

      leaderStorage.hold();
      const first = acquire("x", 1);
      await until(() => leaderStorage.saving === 1);
      // The followers persist the entry and acknowledge it; two of three commit it, and
      // the leader grants it while its own save of the entry is still in progress.
      const granted = await Promise.race([
        first,
        new Promise<never>((_, reject) =>
          setTimeout(() => reject(new Error("no grant while the leader's save is held")), 2_000)
        ),
      ]);
      assert.equal(granted.acquired, true);
      assert.equal(leaderStorage.saving, 1, "the leader's save is still held");
      // Proposed during the held save: its appends go out at once, the followers persist
      // it, but the leader applies it only once its own write of it has started.
      let secondDone = false;
      const second = acquire("y", 2).then((response) => {
        secondDone = true;
        return response;
      });
      await until(() =>
        followerStorages.every((storage) =>
          storage.entries.some((entry) => entry.index > granted.token)
        )
      );
      await new Promise((resolve) => setTimeout(resolve, 20));
      assert.equal(secondDone, false, "not applied before the leader writes it");
      assert.ok(!leaderStorage.entries.some((entry) => entry.index === granted.token));
      leaderStorage.release();
      const secondGrant = await second;
      assert.equal(secondGrant.acquired, true);
      assert.ok(secondGrant.token > granted.token);
      await until(() =>
        nodes.every((node) => node.machine.holder("y")?.token === secondGrant.token)
      );
      assert.ok(leaderStorage.entries.some((entry) => entry.index === granted.token));
    } finally {
      for (const storage of storages) storage.release();
      for (const node of nodes) await node.stop();
    }
  },
});

Deno.test({
  name: "lock node: a step of the wall clock neither expires live sessions nor keeps dead ones",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    // Session TTLs and acquire timeouts run on the monotonic clock; the wall clock only
    // stamps commands. A one-hour step forward (NTP, an operator) must not expire a
    // session that keeps alive, and a step back must not keep a silent one alive.
    let wallOffsetMs = 0;
    const network = new Network();
    const { nodes } = makeNodes(
      network,
      [new MemoryStorage(), new MemoryStorage(), new MemoryStorage()],
      10,
      () => Date.now() + wallOffsetMs,
    );
    const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
    try {
      for (const node of nodes) node.start();
      const leader = await until(() => nodes.find((node) => node.role === "leader"));
      const live = await leader.openSession({ clientName: "live", ttlMs: 2_000, openKey: "a" });
      const silent = await leader.openSession({ clientName: "silent", ttlMs: 1_000, openKey: "b" });
      wallOffsetMs = 3_600_000;
      for (let i = 0; i < 6; i++) {
        await sleep(100);
        await leader.keepAlive({ sessionId: live.sessionId });
      }
      assert.notEqual(leader.machine.session(live.sessionId), null, "a live session survives");
      assert.notEqual(
        leader.machine.session(silent.sessionId),
        null,
        "a silent session lives out its TTL",
      );
      wallOffsetMs = -3_600_000;
      await until(() => leader.machine.session(silent.sessionId) === null, 3_000);
      await leader.keepAlive({ sessionId: live.sessionId });
      assert.notEqual(leader.machine.session(live.sessionId), null);
    } finally {
      for (const node of nodes) await node.stop();
    }
  },
});

/** A started one-member node (its own leader) with `extra` options, for API-level tests. */
async function soloLeader(
  extra: Pick<TestNodeOptions, "filewriter" | "sessionTtlMsMin"> = {},
): Promise<LockNode> {
  const network = new Network();
  const node = testLockNode({
    self: "n1",
    members: ["n1"],
    storage: new MemoryStorage(),
    transport: network.transport("n1"),
    random: () => 0.5,
    onFatal: (error) => {
      throw error;
    },
    ...extra,
  });
  node.start();
  await until(() => node.role === "leader");
  return node;
}

/** Opens a session on `node` and takes lock "x" with it (free, so granted at once). */
async function sessionHoldingX(node: LockNode): Promise<{ sessionId: number; token: number }> {
  const opened = await node.openSession({ clientName: "c", ttlMs: 60_000, openKey: "k" });
  const granted = await node.acquire({
    sessionId: opened.sessionId,
    lock: "x",
    requestId: 1,
    wait: false,
    timeoutMs: 0,
  });
  assert.equal(granted.acquired, true);
  return { sessionId: opened.sessionId, token: granted.token };
}

Deno.test({
  name: "lock node: an append the filewriter cannot take names the filewriter, not this server",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const address = `127.0.0.1:${(listener.addr as Deno.NetAddr).port}`;
    listener.close(); // Nothing listens there: the filewriter is down.
    const node = await soloLeader({
      filewriter: {
        appender: new FilewriterClient(address, { attemptsMax: 2, retryDelayMs: 10 }),
        address,
      },
    });
    try {
      const granted = await sessionHoldingX(node);
      const error = await node.append({
        sessionId: granted.sessionId,
        lock: "x",
        token: granted.token,
        file: "f5",
        data: new TextEncoder().encode("data"),
        requestId: "r1",
      }).then(() => assert.fail("the append succeeded"), (error: unknown) => error);
      assert.ok(error instanceof DownstreamUnavailableError, String(error));
      assert.equal(error.reason, "UNAVAILABLE", "retry-safe, as before");
      assert.deepEqual(error.downstream, {
        service: "filewriter",
        address,
        attempts: 2,
        unreachable: true,
        problem: (error.downstream as { problem: string }).problem,
      });
      assert.match(
        error.message,
        new RegExp(
          `^Cannot append to f5 as the filewriter at ${address} is unreachable \\(tried 2 times\\): .+`,
        ),
      );
    } finally {
      await node.stop();
    }
  },
});

Deno.test({
  name:
    "lock node: a hung filewriter (accepts, never answers) fails the append within the call budget, below the client's attempt timeout",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const address = `127.0.0.1:${(listener.addr as Deno.NetAddr).port}`;
    const accepted: Deno.Conn[] = [];
    const accepting = (async () => {
      try {
        for await (const connection of listener) accepted.push(connection); // never answered
      } catch { /* closed */ }
    })();
    const node = await soloLeader({
      filewriter: {
        appender: new FilewriterClient(address, forwardingFilewriterOptions),
        address,
      },
    });
    try {
      const granted = await sessionHoldingX(node);
      const startedMs = performance.now();
      const error = await node.append({
        sessionId: granted.sessionId,
        lock: "x",
        token: granted.token,
        file: "f6",
        data: new TextEncoder().encode("data"),
        requestId: "r1",
      }).then(() => assert.fail("the append succeeded"), (error: unknown) => error);
      const elapsedMs = performance.now() - startedMs;
      assert.ok(error instanceof DownstreamUnavailableError, String(error));
      assert.ok(accepted.length >= 2, `retried on a new connection: ${accepted.length}`);
      assert.ok(
        elapsedMs >= limits.filewriterCallMsMax - 200 &&
          elapsedMs <= limits.filewriterCallMsMax + 500,
        `failed after ${elapsedMs} ms, the budget is ${limits.filewriterCallMsMax} ms`,
      );
      assert.ok(elapsedMs < limits.clientAttemptTimeoutMsDefault - 500, `${elapsedMs} ms`);
      const downstream = error.downstream as { attempts: number; unreachable: boolean };
      assert.equal(downstream.unreachable, true);
      assert.equal(downstream.attempts, accepted.length);
      assert.match(
        error.message,
        new RegExp(
          `^Cannot append to f6 as the filewriter at ${address} is unreachable \\(tried ${downstream.attempts} times\\): .*no answer within \\d+ ms`,
        ),
      );
    } finally {
      await node.stop();
      listener.close();
      for (const connection of accepted) connection.close();
      await accepting;
    }
  },
});

Deno.test({
  name:
    "lock node: the leader raises a TTL shorter than a failover to its minimum before proposing",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const node = await soloLeader({ sessionTtlMsMin: 8_000 });
    try {
      const short = await node.openSession({ clientName: "s", ttlMs: 1_000, openKey: "k1" });
      assert.equal(short.ttlMs, 8_000, "granted the minimum");
      assert.equal(node.machine.session(short.sessionId)?.ttlMs, 8_000, "in the log");
      assert.equal((await node.keepAlive({ sessionId: short.sessionId })).ttlMs, 8_000);
      const long = await node.openSession({ clientName: "l", ttlMs: 60_000, openKey: "k2" });
      assert.equal(long.ttlMs, 60_000, "longer TTLs as asked");
    } finally {
      await node.stop();
    }
  },
});

Deno.test({
  name: "lock node: one call's timeout does not end another call's wait of the same session",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const node = await soloLeader();
    try {
      const holder = await node.openSession({ clientName: "h", ttlMs: 60_000, openKey: "h" });
      const app = await node.openSession({ clientName: "a", ttlMs: 60_000, openKey: "a" });
      const held = await node.acquire({
        sessionId: holder.sessionId,
        lock: "jobs",
        requestId: 1,
        wait: false,
        timeoutMs: 0,
      });
      assert.equal(held.acquired, true);
      let patientSettled = false;
      const patient = node.acquire({
        sessionId: app.sessionId,
        lock: "jobs",
        requestId: 1,
        wait: true,
        timeoutMs: 0,
      }).finally(() => (patientSettled = true));
      const hasty = node.acquire({
        sessionId: app.sessionId,
        lock: "jobs",
        requestId: 2,
        wait: true,
        timeoutMs: 150,
      });
      await assert.rejects(
        hasty,
        (error: unknown) => error instanceof DlockError && error.reason === "TIMEOUT",
      );
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.equal(patientSettled, false, "the other call still waits");
      assert.deepEqual(
        node.machine.waiters("jobs").map((waiter) => waiter.sessionId),
        [app.sessionId],
        "the session keeps its place in the queue",
      );
      await node.release({
        sessionId: holder.sessionId,
        lock: "jobs",
        requestId: 2,
        token: held.token,
      });
      const granted = await patient;
      assert.equal(granted.acquired, true);
      assert.ok(granted.token > held.token);
    } finally {
      await node.stop();
    }
  },
});

/**
 * LockNode snapshots: the compaction is persisted in the background (the loop goes on
 * serving while it persists), at most one at a time; a failed one stops the node through
 * onFatal; stop() waits for the one in flight.
 */
import assert from "node:assert/strict";
import type { Entry, HardState, Snapshot } from "../raft/types.ts";
import { LockNode, type LogStorage } from "./node.ts";
import { testLockNode } from "./_node_test_helper.ts";

/** Saves at once; each compaction waits until the test settles it. */
class ControlledStorage implements LogStorage {
  readonly compactions: {
    readonly snapshot: Snapshot;
    readonly resolve: () => void;
    readonly reject: (error: Error) => void;
  }[] = [];
  save(_batch: { hardState?: HardState; entries: readonly Entry[]; snapshot?: Snapshot }) {
    return Promise.resolve();
  }
  saveSnapshotAndCompact(snapshot: Snapshot): Promise<void> {
    return new Promise((resolve, reject) => {
      this.compactions.push({ snapshot, resolve, reject });
    });
  }
  close() {}
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

function singleNode(storage: LogStorage, fatal: unknown[]): LockNode {
  return testLockNode({
    self: "n1",
    members: ["n1"],
    storage,
    transport: { send: () => {}, onReceive: () => {}, close: () => Promise.resolve() },
    random: () => 0.5,
    logEntriesBeforeSnapshot: 10,
    onFatal: (error) => fatal.push(error),
  });
}

/** Rejects after `ms`, for a hard bound on a wait. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Timed out after ${ms} ms: ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

let requestCounter = 0;

/** Acquires and releases lock `name` `times` times; resolves when all are applied. */
function pairs(node: LockNode, sessionId: number, name: string, times: number): Promise<void> {
  return within(pairsUnbounded(node, sessionId, name, times), 5_000, `${times} pairs on ${name}`);
}

async function pairsUnbounded(node: LockNode, sessionId: number, name: string, times: number) {
  for (let i = 0; i < times; i++) {
    const granted = await node.acquire({
      sessionId,
      lock: name,
      requestId: ++requestCounter,
      wait: true,
      timeoutMs: 0,
    });
    assert.equal(granted.acquired, true);
    await node.release({
      sessionId,
      lock: name,
      requestId: ++requestCounter,
      token: granted.token,
    });
  }
}

Deno.test({
  name: "lock node: compactions persist in the background, one at a time; stop waits for it",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const storage = new ControlledStorage();
    const fatal: unknown[] = [];
    const node = singleNode(storage, fatal);
    let stopped = false;
    try {
      node.start();
      await until(() => node.role === "leader");
      const { sessionId } = await node.openSession({
        clientName: "c",
        ttlMs: 60_000,
        openKey: "k",
      });
      await pairs(node, sessionId, "a", 15);
      await until(() => storage.compactions.length === 1);
      const first = storage.compactions[0]!;
      // The loop goes on while the compaction persists, and takes no other snapshot.
      const appliedBefore = node.appliedIndex;
      await pairs(node, sessionId, "b", 30);
      assert.ok(node.appliedIndex >= appliedBefore + 60);
      assert.equal(storage.compactions.length, 1, "a second compaction while one persists");
      first.resolve();
      await pairs(node, sessionId, "c", 2);
      await until(() => storage.compactions.length === 2);
      const second = storage.compactions[1]!;
      assert.ok(second.snapshot.meta.index > first.snapshot.meta.index);
      // stop() waits for the compaction in flight.
      let stopDone = false;
      const stopping = node.stop().then(() => stopDone = true);
      stopped = true;
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.equal(stopDone, false, "stop() returned while a compaction persists");
      second.resolve();
      await stopping;
      assert.deepEqual(fatal, []);
    } finally {
      for (const compaction of storage.compactions) compaction.resolve();
      if (!stopped) await node.stop();
    }
  },
});

Deno.test({
  name: "lock node: a failed compaction stops the node through onFatal",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const storage = new ControlledStorage();
    const fatal: unknown[] = [];
    const node = singleNode(storage, fatal);
    try {
      node.start();
      await until(() => node.role === "leader");
      const { sessionId } = await node.openSession({
        clientName: "c",
        ttlMs: 60_000,
        openKey: "k",
      });
      await pairs(node, sessionId, "a", 15);
      await until(() => storage.compactions.length === 1);
      const failure = new Error("disk full");
      storage.compactions[0]!.reject(failure);
      await until(() => fatal.length > 0);
      assert.deepEqual(fatal, [failure]);
      // The node serves nothing more: the proposal is never applied.
      const applied = node.appliedIndex;
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.equal(node.appliedIndex, applied);
    } finally {
      for (const compaction of storage.compactions) compaction.resolve();
      await node.stop();
    }
  },
});

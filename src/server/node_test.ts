/**
 * LockNode with the real Raft core over an in-memory network that can partition a
 * node: a deposed leader fails its pending proposals with NOT_LEADER, and the retry at
 * the new leader (same request id) takes effect exactly once.
 */
import assert from "node:assert/strict";
import { DlockError } from "../errors.ts";
import { LockStateMachine } from "../lock/mod.ts";
import { silentLogger } from "../log.ts";
import { RaftNode } from "../raft/mod.ts";
import type { Entry, HardState, Message, Snapshot } from "../raft/types.ts";
import type { ReceiveHandler, Transport } from "../transport/types.ts";
import { LockNode, type LogStorage } from "./node.ts";

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

Deno.test({
  name: "lock node: a deposed leader fails pending proposals; the retry applies once",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const members = ["n1", "n2", "n3"];
    const network = new Network();
    let seed = 1;
    const nodes = members.map((id) =>
      new LockNode({
        self: id,
        members,
        raft: new RaftNode({
          id,
          voters: members,
          electionTicks: 10,
          heartbeatTicks: 2,
          preVote: true,
          checkQuorum: true,
          entriesPerAppendMax: 64,
          bytesPerAppendMax: 1 << 20,
          inflightAppendsMax: 8,
          readMode: "safe",
          leaseDriftTicks: 0,
          random: () => (seed = (seed * 16807) % 2147483647) / 2147483647,
        }, { hardState: { term: 0, vote: null, commit: 0 }, snapshot: null, entries: [] }),
        storage: new MemoryStorage(),
        transport: network.transport(id),
        machine: new LockStateMachine(),
        snapshotIndex: 0,
        restoredHardState: { term: 0, vote: null, commit: 0 },
        filewriter: null,
        filewriterAddress: "",
        logger: silentLogger,
        tickMs: 5,
        onFatal: (error) => {
          throw error;
        },
      })
    );
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

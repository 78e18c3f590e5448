import assert from "node:assert/strict";
import type { Message } from "../raft/types.ts";
import { createLogger, silentLogger } from "../log.ts";
import { freeServerPorts, peerAddressOf, peerPortOf, TcpTransport } from "./tcp.ts";

async function until(condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** A member address whose peer port (offset 1000 here) is free. */
function freeMember(): string {
  for (;;) {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = listener.addr.port;
    listener.close();
    if (port + 1000 > 65_535) continue;
    try {
      Deno.listen({ hostname: "127.0.0.1", port: port + 1000 }).close();
      return `127.0.0.1:${port}`;
    } catch {
      // Taken.
    }
  }
}

Deno.test("tcp transport: peer address rule", () => {
  assert.deepEqual(peerAddressOf("127.0.0.1:5000"), { hostname: "127.0.0.1", port: 15000 });
  assert.deepEqual(peerAddressOf("localhost:60000"), { hostname: "127.0.0.1", port: 50000 });
  assert.deepEqual(peerAddressOf("[::1]:7000", 5), { hostname: "::1", port: 7005 });
});

Deno.test({
  name:
    "tcp transport: batches arrive intact, big snapshots in chunks, reconnects, other clusters refused",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const [a, b, c] = [freeMember(), freeMember(), freeMember()];
    const options = { logger: silentLogger, peerPortOffset: 1000, reconnectDelayMsMax: 100 };
    const ta = new TcpTransport({
      self: a,
      peers: [b, c],
      clusterId: "one",
      snapshotChunkBytes: 64 * 1024,
      ...options,
    });
    let tb = new TcpTransport({ self: b, peers: [a], clusterId: "one", ...options });
    const refusals = collectingLogger();
    const tc = new TcpTransport({
      self: c,
      peers: [a],
      clusterId: "two",
      ...options,
      logger: refusals.logger,
    });
    try {
      const receivedB: Message[] = [];
      const receivedC: Message[] = [];
      tb.onReceive((messages) => receivedB.push(...messages));
      tc.onReceive((messages) => receivedC.push(...messages));
      const big = new Uint8Array(1_500_000).map((_, index) => index % 251);
      const sent: Message[] = [
        { type: "heartbeat", from: a, to: b, term: 1, commit: 0 },
        {
          type: "append",
          from: a,
          to: b,
          term: 1,
          index: 0,
          logTerm: 0,
          commit: 0,
          entries: [{ term: 1, index: 1, kind: "normal", data: new Uint8Array([1, 2, 3]) }],
        },
        {
          type: "snapshot",
          from: a,
          to: b,
          term: 1,
          snapshot: { meta: { index: 5, term: 1, voters: [a, b] }, data: big },
        },
        { type: "timeoutNow", from: a, to: b, term: 1 },
      ];
      // Messages sent before the link is up are dropped; Raft resends, so does the test.
      await until(() => {
        if (receivedB.length === 0) ta.send(sent);
        return receivedB.length >= sent.length;
      });
      assert.deepEqual(receivedB.slice(0, sent.length), sent);

      // The receiver restarts: the link reconnects and delivers again.
      await tb.close();
      receivedB.length = 0;
      for (let attempt = 0;; attempt++) {
        try {
          tb = new TcpTransport({ self: b, peers: [a], clusterId: "one", ...options });
          break;
        } catch (error) {
          // The old listener's port may take a moment to be released.
          if (!(error instanceof Deno.errors.AddrInUse) || attempt > 50) throw error;
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      }
      tb.onReceive((messages) => receivedB.push(...messages));
      await until(() => {
        ta.send([{ type: "heartbeat", from: a, to: b, term: 2, commit: 1 }]);
        return receivedB.length > 0;
      });
      assert.equal(receivedB[0]?.term, 2);

      // Another cluster's batches are refused, on every redial; the refusal is logged once
      // (per peer every 10 s), saying what to check.
      for (let attempt = 0; attempt < 20; attempt++) {
        ta.send([{ type: "heartbeat", from: a, to: c, term: 1, commit: 0 }]);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      assert.equal(receivedC.length, 0);
      const refused = refusals.lines.filter((line) => line.includes("another cluster"));
      assert.equal(refused.length, 1, refusals.lines.join("\n"));
      assert.match(refused[0]!, /same member addresses, written the same way/);
    } finally {
      for (const transport of [ta, tb, tc]) await transport.close();
    }
  },
});

/** A logger that keeps its lines. */
function collectingLogger(): { logger: ReturnType<typeof createLogger>; lines: string[] } {
  const lines: string[] = [];
  return { logger: createLogger({ level: "debug", write: (line) => lines.push(line) }), lines };
}

const redialed = "redialing a peer whose connection stopped carrying data";

Deno.test({
  name: "tcp transport: a link that carries data is acknowledged and never redialed",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const [a, b] = [freeMember(), freeMember()];
    const log = collectingLogger();
    // A short stall limit: acknowledgements come at least every 100 ms while data flows.
    const options = { peerPortOffset: 1000, reconnectDelayMsMax: 100, stallMs: 400 };
    const ta = new TcpTransport({ self: a, peers: [b], clusterId: "one", ...options, ...log });
    const tb = new TcpTransport({
      self: b,
      peers: [a],
      clusterId: "one",
      ...options,
      logger: silentLogger,
    });
    try {
      let received = 0;
      tb.onReceive((messages) => received += messages.length);
      await until(() => {
        ta.send([{ type: "heartbeat", from: a, to: b, term: 1, commit: 0 }]);
        return received > 0;
      });
      // 1.5 s of messages every 20 ms, then single messages far apart (each must still be
      // acknowledged, late, so that the next write does not find the link stalled).
      await new Promise((resolve) => setTimeout(resolve, 100));
      const before = received;
      const droppedBefore = ta.stats()[b]?.droppedMessages;
      let sent = 0;
      for (const gapMs of [...Array(75).fill(20), 600, 30, 600, 600]) {
        ta.send([{ type: "heartbeat", from: a, to: b, term: 1, commit: 0 }]);
        sent++;
        await new Promise((resolve) => setTimeout(resolve, gapMs));
      }
      await until(() => received - before === sent, 2_000).catch((error) => {
        throw new Error(`${received - before} of ${sent} arrived: ${JSON.stringify(ta.stats())}`, {
          cause: error,
        });
      });
      assert.deepEqual(log.lines.filter((line) => line.includes(redialed)), []);
      assert.equal(ta.stats()[b]?.droppedMessages, droppedBefore);
    } finally {
      for (const transport of [ta, tb]) await transport.close();
    }
  },
});

Deno.test({
  name: "tcp transport: a link whose writes go unacknowledged is dialed anew and delivers again",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const [a, b] = [freeMember(), freeMember()];
    const log = collectingLogger();
    // The peer: acknowledges what arrives on its first connection for a while, then keeps
    // reading but stops acknowledging (to the sender, a connection that stopped carrying
    // data); on any later connection it acknowledges again.
    const listener = Deno.listen(peerAddressOf(b, 1000));
    const connections: { bytes: number }[] = [];
    let acknowledgeFirst = true;
    const serving = (async () => {
      for await (const conn of listener) {
        const state = { bytes: 0 };
        const index = connections.push(state) - 1;
        (async () => {
          const buffer = new Uint8Array(64 * 1024);
          try {
            for (;;) {
              const read = await conn.read(buffer);
              if (read === null) break;
              state.bytes += read;
              if (index > 0 || acknowledgeFirst) await conn.write(new Uint8Array([0]));
            }
          } catch {
            // Closed by the sender.
          }
          try {
            conn.close();
          } catch {
            // Already closed.
          }
        })();
      }
    })();
    const ta = new TcpTransport({
      self: a,
      peers: [b],
      clusterId: "one",
      peerPortOffset: 1000,
      reconnectDelayMsMax: 100,
      stallMs: 300,
      ...log,
    });
    const heartbeat = (): Message => ({ type: "heartbeat", from: a, to: b, term: 1, commit: 0 });
    try {
      await until(() => {
        ta.send([heartbeat()]);
        return (connections[0]?.bytes ?? 0) > 0;
      });
      for (let i = 0; i < 20; i++) {
        ta.send([heartbeat()]);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      assert.equal(connections.length, 1, "no redial while acknowledged");
      acknowledgeFirst = false;
      const stalledAt = performance.now();
      await until(() => {
        ta.send([heartbeat()]);
        return connections.length === 2;
      }, 3_000);
      const redialMs = performance.now() - stalledAt;
      assert.ok(redialMs >= 250, `redialed after ${redialMs} ms, before the 300 ms limit`);
      assert.equal(log.lines.filter((line) => line.includes(redialed)).length, 1);
      // The new connection carries the messages sent after the redial.
      await until(() => {
        ta.send([heartbeat()]);
        return (connections[1]?.bytes ?? 0) > 0;
      });
    } finally {
      await ta.close();
      listener.close();
      await serving.catch(() => {});
    }
  },
});

Deno.test("freeServerPorts: no port is another's peer port, and every pair was free", () => {
  const ports = freeServerPorts(12);
  assert.equal(ports.length, 12);
  const used = [...ports, ...ports.map((port) => peerPortOf(port))];
  assert.equal(new Set(used).size, used.length, `ports ${ports.join(",")} collide`);
  for (const port of ports) {
    assert.equal(peerPortOf(port), port + 10_000 <= 65_535 ? port + 10_000 : port - 10_000);
  }
});

import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import type { Message } from "../raft/types.ts";
import { silentLogger } from "../log.ts";
import { GrpcTransport } from "./grpc.ts";

async function serve(server: grpc.Server): Promise<number> {
  return await new Promise((resolve, reject) =>
    server.bindAsync(
      "127.0.0.1:0",
      grpc.ServerCredentials.createInsecure(),
      (error, port) => error === null ? resolve(port) : reject(error),
    )
  );
}

async function until(condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

Deno.test({
  name:
    "grpc transport: batches arrive intact over real sockets, big snapshots in chunks, other clusters refused",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const serverA = new grpc.Server();
    const serverB = new grpc.Server();
    const serverC = new grpc.Server();
    const portA = await serve(serverA);
    const portB = await serve(serverB);
    const portC = await serve(serverC);
    const a = `127.0.0.1:${portA}`;
    const b = `127.0.0.1:${portB}`;
    const c = `127.0.0.1:${portC}`;
    const transports = [
      new GrpcTransport({
        self: a,
        peers: [b, c],
        clusterId: "one",
        server: serverA,
        logger: silentLogger,
        snapshotChunkBytes: 16 * 1024,
      }),
      new GrpcTransport({
        self: b,
        peers: [a],
        clusterId: "one",
        server: serverB,
        logger: silentLogger,
      }),
      new GrpcTransport({
        self: c,
        peers: [a],
        clusterId: "two",
        server: serverC,
        logger: silentLogger,
      }),
    ];
    const [ta, tb, tc] = transports as [GrpcTransport, GrpcTransport, GrpcTransport];
    try {
      const receivedB: Message[] = [];
      const receivedC: Message[] = [];
      tb.onReceive((messages) => receivedB.push(...messages));
      tc.onReceive((messages) => receivedC.push(...messages));
      const big = new Uint8Array(200_000).map((_, index) => index % 251);
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
      // The first sends may race the connection; resend until delivered (Raft does the same).
      await until(() => {
        if (receivedB.length === 0) ta.send(sent);
        return receivedB.length >= sent.length;
      }, 10_000).catch((error) => {
        console.log(receivedB.map((message) => message.type), ta.stats());
        throw error;
      });
      assert.deepEqual(receivedB.slice(0, sent.length), sent);

      // A peer of another cluster id refuses the batches; nothing is delivered.
      for (let attempt = 0; attempt < 20; attempt++) {
        ta.send([{ type: "heartbeat", from: a, to: c, term: 1, commit: 0 }]);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      assert.equal(receivedC.length, 0);
      // Messages to an unknown peer are dropped without harm.
      ta.send([{ type: "heartbeat", from: a, to: "127.0.0.1:1", term: 1 }]);
      assert.ok(ta.stats()[b]!.sentMessages >= sent.length);
    } finally {
      for (const transport of transports) await transport.close();
      for (const server of [serverA, serverB, serverC]) server.forceShutdown();
    }
  },
});

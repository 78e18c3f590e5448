/**
 * A member on `--peer-transport grpc` among members on `tcp`: the stream is refused and
 * both sides say which flag differs, once (the transports redial all the time).
 */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { createLogger } from "../log.ts";
import { GrpcTransport } from "../transport/grpc.ts";
import { refuseGrpcPeers } from "./grpc_api.ts";

async function serve(server: grpc.Server): Promise<number> {
  return await new Promise((resolve, reject) =>
    server.bindAsync(
      "127.0.0.1:0",
      grpc.ServerCredentials.createInsecure(),
      (error, port) => error === null ? resolve(port) : reject(error),
    )
  );
}

Deno.test({
  name:
    "grpc peers: a peer on --peer-transport tcp refuses the stream; both sides log one ERROR naming --peer-transport",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const grpcLines: string[] = [];
    const tcpLines: string[] = [];
    const serverA = new grpc.Server();
    const serverC = new grpc.Server(); // the gRPC server of a member on --peer-transport tcp
    refuseGrpcPeers(serverC, createLogger({ write: (line) => tcpLines.push(line) }));
    const a = `127.0.0.1:${await serve(serverA)}`;
    const c = `127.0.0.1:${await serve(serverC)}`;
    const transport = new GrpcTransport({
      self: a,
      peers: [c],
      clusterId: "one",
      server: serverA,
      logger: createLogger({ write: (line) => grpcLines.push(line) }),
      reconnectDelayMsMin: 10,
      reconnectDelayMsMax: 20,
    });
    try {
      const deadline = Date.now() + 1_500;
      while (Date.now() < deadline) {
        transport.send([{ type: "heartbeat", from: a, to: c, term: 1, commit: 0 }]);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      const onGrpc = grpcLines.filter((line) => line.includes("--peer-transport"));
      const onTcp = tcpLines.filter((line) => line.includes("--peer-transport"));
      assert.equal(onGrpc.length, 1, grpcLines.join("\n"));
      assert.match(
        onGrpc[0]!,
        new RegExp(`ERROR.*the peer at ${c} uses a different --peer-transport`),
      );
      assert.equal(onTcp.length, 1, tcpLines.join("\n"));
      assert.match(
        onTcp[0]!,
        new RegExp(`ERROR.*the peer at ${a} uses a different --peer-transport`),
      );
    } finally {
      await transport.close();
      serverA.forceShutdown();
      serverC.forceShutdown();
    }
  },
});

import assert from "node:assert/strict";
import { createLogger } from "../log.ts";
import { ClientFrontend } from "./native.ts";

/** Sends `bytes` on a new connection to `port` and waits until the frontend closes it. */
async function sendAndWaitForClose(port: number, bytes: Uint8Array): Promise<void> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(bytes);
    const buffer = new Uint8Array(16);
    while ((await conn.read(buffer)) !== null) { /* closed by the frontend: read gives null */ }
  } catch {
    /* reset: closed too */
  } finally {
    try {
      conn.close();
    } catch { /* already closed */ }
  }
}

Deno.test({
  name:
    "client frontend: connections in no known protocol are logged once per host per 10 s, with a hint for Raft peer frames",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const lines: string[] = [];
    const frontend = new ClientFrontend({
      hostname: "127.0.0.1",
      port: 0,
      grpcAddress: { hostname: "127.0.0.1", port: 1 },
      openStream: () => {
        throw new Error("no native stream expected");
      },
      logger: createLogger({ level: "debug", write: (line) => lines.push(line) }),
    });
    try {
      // What a TCP peer link sends: a 4-byte length, then a RaftBatch (field 1, cluster id).
      const peerFrame = new Uint8Array([0, 0, 0, 7, 0x0a, 5, 0x61, 0x62, 0x63, 0x64, 0x65]);
      for (let index = 0; index < 20; index++) await sendAndWaitForClose(frontend.port, peerFrame);
      const warned = lines.filter((line) => line.includes("no known protocol"));
      assert.equal(warned.length, 1, warned.join("\n"));
      assert.match(warned[0]!, /looks like Raft peer traffic.*--peer-port-offset/);
    } finally {
      frontend.close();
    }
  },
});

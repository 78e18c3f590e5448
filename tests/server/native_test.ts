/**
 * Real server process: the client API port speaks the native protocol (`DLK1`, then
 * length-prefixed StreamRequest / StreamResponse frames) with the `Stream` semantics,
 * closes connections that send garbage, an oversized frame or an unknown protocol, and
 * keeps serving native and gRPC clients afterwards. Also the client library over both
 * transports. The frames are built here from the proto (not with src/client), so the
 * test pins the wire contract.
 */
import assert from "node:assert/strict";
import { connect, fetchStatus } from "../../src/client/mod.ts";
import { loadPackageDefinition } from "../../src/transport/proto.ts";
import { TestCluster } from "./_cluster.ts";

// deno-lint-ignore no-explicit-any
type AnyRecord = Record<string, any>;

const method = (loadPackageDefinition("lock.proto")["dlock.v1.Lock"] as AnyRecord)["Stream"];
const encodeRequest = (request: AnyRecord): Uint8Array => method.requestSerialize(request);
const decodeResponse = (bytes: Uint8Array): AnyRecord => method.responseDeserialize(bytes);

function frame(payload: Uint8Array): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(4 + payload.byteLength);
  new DataView(bytes.buffer).setUint32(0, payload.byteLength);
  bytes.set(payload, 4);
  return bytes;
}

function join(parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const total = parts.reduce((sum, part) => sum + part.byteLength, 0);
  const bytes = new Uint8Array(total);
  let offset = 0;
  for (const part of parts) {
    bytes.set(part, offset);
    offset += part.byteLength;
  }
  return bytes;
}

const magic = new TextEncoder().encode("DLK1");

/** A raw native connection: sends frames, reads responses with a hard timeout. */
class RawNative {
  #buffer: Uint8Array<ArrayBuffer> = new Uint8Array(0);
  private constructor(readonly conn: Deno.TcpConn) {}

  static async open(address: string, sendMagic = true): Promise<RawNative> {
    const [hostname, port] = address.split(":") as [string, string];
    const conn = await Deno.connect({ hostname, port: Number(port) });
    if (sendMagic) await conn.write(magic);
    return new RawNative(conn);
  }

  async send(...requests: AnyRecord[]): Promise<void> {
    // All in one write: the server must split and answer every frame.
    await this.writeAll(join(requests.map((request) => frame(encodeRequest(request)))));
  }

  async writeAll(bytes: Uint8Array): Promise<void> {
    for (let written = 0; written < bytes.byteLength;) {
      written += await this.conn.write(bytes.subarray(written));
    }
  }

  /** The next response, or null when the server closed the connection. */
  async next(timeoutMs = 5_000): Promise<AnyRecord | null> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.#buffer.byteLength >= 4) {
        const length = new DataView(this.#buffer.buffer, this.#buffer.byteOffset).getUint32(0);
        if (this.#buffer.byteLength >= 4 + length) {
          const payload = this.#buffer.slice(4, 4 + length);
          this.#buffer = this.#buffer.slice(4 + length);
          return decodeResponse(payload);
        }
      }
      const chunk = await this.#read(deadline);
      if (chunk === null) return null;
      this.#buffer = join([this.#buffer, chunk]);
    }
  }

  /** True when the server closes the connection within `timeoutMs`. */
  async closedByServer(timeoutMs = 5_000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    try {
      for (;;) if ((await this.#read(deadline)) === null) return true;
    } catch (error) {
      if (String(error).includes("timed out")) return false;
      return true; // Reset by the server.
    }
  }

  /** Responses until `count` arrived, keyed by call id. */
  async collect(count: number): Promise<Map<number, AnyRecord>> {
    const byCallId = new Map<number, AnyRecord>();
    while (byCallId.size < count) {
      const response = await this.next();
      assert.ok(response !== null, `connection closed after ${byCallId.size} of ${count}`);
      byCallId.set(response.callId, response);
    }
    return byCallId;
  }

  close(): void {
    try {
      this.conn.close();
    } catch {
      // Already closed.
    }
  }

  async #read(deadline: number): Promise<Uint8Array | null> {
    const buffer = new Uint8Array(64 * 1024);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error("read timed out")), deadline - Date.now());
    });
    try {
      const read = await Promise.race([this.conn.read(buffer), timeout]);
      return read === null ? null : buffer.slice(0, read);
    } finally {
      clearTimeout(timer);
    }
  }
}

Deno.test({
  name: "server: the native protocol serves streams, refuses garbage, and gRPC still works",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const cluster = await TestCluster.create(1);
    const raws: RawNative[] = [];
    const open = async (sendMagic = true) => {
      const raw = await RawNative.open(address, sendMagic);
      raws.push(raw);
      return raw;
    };
    const address = cluster.servers[0]!.address;
    try {
      cluster.startAll();
      assert.equal(await cluster.waitForLeader(), address);

      // Operations over native, several in one write, answered by call id.
      const a = await open();
      await a.send(
        { callId: 1, status: { locksLimit: 10 } },
        { callId: 2, openSession: { clientName: "a", ttlMs: 20_000, openKey: "native-a" } },
        { callId: 3, openSession: { clientName: "b", ttlMs: 20_000, openKey: "native-b" } },
        { callId: 4 }, // Names no operation.
      );
      const first = await a.collect(4);
      assert.equal(first.get(1)?.status?.leader, address);
      const sessionA = first.get(2)?.openSession?.sessionId as number;
      const sessionB = first.get(3)?.openSession?.sessionId as number;
      assert.ok(sessionA > 0 && sessionB > 0 && sessionA !== sessionB);
      assert.equal(first.get(4)?.error?.reason, "INVALID_ARGUMENT");

      // Contention on one stream: b waits; a cancelled wait answers CANCELLED; a
      // release grants the next waiter with a larger token.
      await a.send({
        callId: 10,
        acquire: { sessionId: sessionA, lock: "n", requestId: 1, wait: true, timeoutMs: 0 },
      });
      const grantA = await a.next();
      assert.equal(grantA?.callId, 10);
      assert.equal(grantA?.acquire?.acquired, true);
      await a.send(
        {
          callId: 11,
          acquire: { sessionId: sessionB, lock: "n", requestId: 1, wait: true, timeoutMs: 0 },
        },
        {
          callId: 12,
          acquire: { sessionId: sessionB, lock: "m", requestId: 2, wait: false, timeoutMs: 0 },
        },
      );
      const tryM = await a.next();
      assert.equal(tryM?.callId, 12, "the try-acquire answers while 11 waits");
      assert.equal(tryM?.acquire?.acquired, true);
      await a.send({ callId: 13, cancel: { callId: 11 } });
      const cancelled = await a.next();
      assert.equal(cancelled?.callId, 11);
      assert.equal(cancelled?.error?.reason, "CANCELLED");
      await a.send({
        callId: 14,
        acquire: { sessionId: sessionB, lock: "n", requestId: 3, wait: true, timeoutMs: 0 },
      });
      await a.send({
        callId: 15,
        release: { sessionId: sessionA, lock: "n", requestId: 2, token: grantA?.acquire?.token },
      });
      const afterRelease = await a.collect(2);
      assert.equal(afterRelease.get(15)?.release?.released, true);
      assert.equal(afterRelease.get(14)?.acquire?.acquired, true);
      assert.ok(afterRelease.get(14)?.acquire?.token > grantA?.acquire?.token);

      // A summary-only Status (the client's liveness probe) lists no sessions and no locks,
      // only the counts; a plain one lists them.
      await a.send(
        { callId: 16, status: { locksLimit: 0, summaryOnly: true } },
        { callId: 17, status: { locksLimit: 10 } },
      );
      const statuses = await a.collect(2);
      const summary = statuses.get(16)?.status;
      assert.equal(summary?.leader, address);
      assert.deepEqual([summary?.sessions.length, summary?.locks.length], [0, 0]);
      assert.deepEqual([summary?.sessionCount, summary?.lockCount], [2, 2]);
      const full = statuses.get(17)?.status;
      assert.deepEqual([full?.sessions.length, full?.locks.length], [2, 2]);

      // Garbage: an unknown protocol, an undecodable frame, an oversized frame, a
      // partial magic; each connection is closed, the server keeps running.
      const http1 = await open(false);
      await http1.writeAll(new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
      assert.ok(await http1.closedByServer(), "unknown protocol closed");
      const undecodable = await open();
      await undecodable.writeAll(frame(new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0x07])));
      assert.ok(await undecodable.closedByServer(), "undecodable frame closed");
      const oversized = await open();
      await oversized.writeAll(new Uint8Array([0xff, 0xff, 0xff, 0xf0, 1, 2, 3]));
      assert.ok(await oversized.closedByServer(), "oversized frame closed");
      const fakePreface = await open(false);
      await fakePreface.writeAll(new TextEncoder().encode("PRI * HTTP/1.1\r\n\r\nXX\r\n\r\n"));
      assert.ok(await fakePreface.closedByServer(), "a wrong HTTP/2 preface closed");

      // The first connection and new ones keep working; so does gRPC on the same port.
      await a.send({ callId: 20, keepAlive: { sessionId: sessionA } });
      assert.equal((await a.next())?.keepAlive?.ttlMs, 20_000);
      const b = await open();
      await b.send({ callId: 1, status: { locksLimit: 10 } });
      const status = (await b.next())?.status;
      assert.deepEqual(
        status?.locks.map((lock: AnyRecord) => [lock.name, lock.holderSession]).sort(),
        [["m", sessionB], ["n", sessionB]],
      );
      const grpcStatus = await cluster.client(address).call("Status", {});
      assert.equal(grpcStatus.leader, address);
      const serverLog = cluster.logs();
      assert.match(serverLog, /oversized frame/);
      assert.match(serverLog, /undecodable frame/);
      assert.match(serverLog, /no known protocol/);

      // The client library: native by default, gRPC on request; fetchStatus too.
      for (const transport of [undefined, "grpc", "native"] as const) {
        const client = await connect([address], {
          name: `lib-${transport ?? "default"}`,
          ttlMs: 5_000,
          ...(transport === undefined ? {} : { transport }),
        });
        try {
          const lock = await client.acquire("lib", { timeoutMs: 5_000 });
          assert.ok(lock.token > 0);
          await lock.release();
        } finally {
          await client.close();
        }
      }
      assert.equal((await fetchStatus([address])).leader, address);
      assert.equal((await fetchStatus([address], { transport: "grpc" })).leader, address);
      assert.equal(cluster.servers[0]!.child !== null, true);
      const exited = await Promise.race([
        cluster.servers[0]!.child!.status.then(() => true),
        new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 200)),
      ]);
      assert.equal(exited, false, `the server kept running\n${cluster.logs()}`);
    } catch (error) {
      // Whatever failed, the server's own log tells why (a crash shows only there).
      console.error(cluster.logs());
      throw error;
    } finally {
      for (const raw of raws) raw.close();
      await cluster.stop();
    }
  },
});

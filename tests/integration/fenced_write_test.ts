/**
 * Issue 4's "done when", with real processes: the original project's scenarios of a
 * paused holder, a retried write, and a leader failover in the middle of appends.
 */
import assert from "node:assert/strict";
import { connect, type DlockClient, StaleFenceError } from "../../src/client/mod.ts";
import { StreamConnection } from "../../src/client/_connection.ts";
import { FilewriterClient } from "../../src/filewriter/mod.ts";
import { Agent, eventually, startCluster, traceLogger, withTimeout } from "./_harness.ts";

const processTest = { sanitizeOps: false, sanitizeResources: false };

async function readText(files: FilewriterClient, file: string): Promise<string> {
  const bytes = await files.read(file);
  return bytes === null ? "" : new TextDecoder().decode(bytes);
}

Deno.test({
  name: "a holder paused past its lease cannot write after the next holder wrote",
  ...processTest,
  async fn() {
    const cluster = await startCluster();
    let paused: Agent | null = null;
    let next: DlockClient | null = null;
    try {
      const ttlMs = 2_000;
      paused = new Agent(cluster.dir, "paused", [
        "--servers",
        cluster.addresses.join(","),
        "--name",
        "paused",
        "--ttl-ms",
        String(ttlMs),
      ]);
      assert.equal((await paused.next(30_000)).event, "connected");
      const acquired = await paused.call({ op: "acquire", lock: "fenced" });
      assert.equal(acquired.ok, true);
      const oldToken = Number(acquired.token);

      paused.process.signal("SIGSTOP");
      next = await connect(cluster.addresses, { name: "next", ttlMs: 5_000 });
      // Granted only once the paused holder's session expired (its keepalives stopped).
      const lock = await next.acquire("fenced", { timeoutMs: ttlMs + 10_000 });
      assert.ok(lock.token > oldToken);
      await lock.append("shared", "new holder's data\n");

      paused.process.signal("SIGCONT");
      // A naive holder writes straight to the storage with its old token: fenced off.
      const direct = await paused.call({
        op: "direct-append",
        filewriter: cluster.filewriterAddress,
        file: "shared",
        data: "stale data (direct)\n",
      });
      assert.equal(direct.ok, false, JSON.stringify(direct));
      assert.equal(direct.reason, "STALE_FENCE");
      // Through the lock service: the holder check refuses it (or the client already knew).
      const through = await paused.call({ op: "append", file: "shared", data: "stale data\n" });
      assert.equal(through.ok, false, JSON.stringify(through));
      assert.ok(
        through.reason === "NOT_HOLDER" || through.reason === "SESSION_EXPIRED",
        JSON.stringify(through),
      );
      const files = new FilewriterClient(cluster.filewriterAddress);
      assert.equal(await readText(files, "shared"), "new holder's data\n");
      await lock.release();
    } finally {
      await paused?.kill().catch(() => {});
      await next?.close().catch(() => {});
      await cluster.stop();
    }
  },
});

Deno.test({
  name: "a write sent twice (retry after a lost reply) is appended once, and survives kill -9",
  ...processTest,
  async fn() {
    const cluster = await startCluster();
    let client: DlockClient | null = null;
    try {
      client = await connect(cluster.addresses, { name: "retrier", ttlMs: 5_000 });
      const lock = await client.acquire("dedupe");
      const first = await lock.append("once", "first\n", { requestId: "request-1" });
      const again = await lock.append("once", "first\n", { requestId: "request-1" });
      assert.equal(first.duplicate, false);
      assert.equal(again.duplicate, true);
      assert.equal(again.offset, first.offset);

      // A lost reply: the request is served on another stream whose answer the client
      // never sees (it arrives here, on a raw stream), and the client retries the same id.
      const leader = (await client.status()).leader;
      const raw = new StreamConnection(leader);
      try {
        const served = await raw.call({
          append: {
            sessionId: client.sessionId,
            lock: "dedupe",
            token: lock.token,
            file: "once",
            data: new TextEncoder().encode("second\n"),
            requestId: "request-2",
          },
        }, 10_000).outcome;
        assert.equal(served.kind === "response" && served.response.append?.duplicate, false);
      } finally {
        raw.close();
      }
      const retried = await lock.append("once", "second\n", { requestId: "request-2" });
      assert.equal(retried.duplicate, true);
      assert.equal(retried.offset, "first\n".length);
      const files = new FilewriterClient(cluster.filewriterAddress);
      assert.equal(await readText(files, "once"), "first\nsecond\n");

      // kill -9 of the filewriter right after acknowledged appends, then a restart.
      await cluster.filewriter?.kill();
      cluster.startFilewriter();
      await cluster.waitForFilewriter();
      assert.equal(await readText(files, "once"), "first\nsecond\n");

      // A holder whose token is older than one the file already accepted (through
      // another lock) gets STALE_FENCE back through the lock service.
      const newer = await client.acquire("dedupe-newer");
      assert.ok(newer.token > lock.token);
      await newer.append("contested", "newer\n");
      await assert.rejects(lock.append("contested", "older\n"), StaleFenceError);
      assert.equal(await readText(files, "contested"), "newer\n");
      await newer.release();
      await lock.release();
    } finally {
      await client?.close().catch(() => {});
      await cluster.stop();
    }
  },
});

Deno.test({
  name: "the leader killed in the middle of 20 appends: all 20 land, in order, once each",
  ...processTest,
  async fn() {
    const cluster = await startCluster();
    let client: DlockClient | null = null;
    const failureTrace: string[] = [];
    try {
      // The client's own account of the failover, printed if the test fails.
      const logger = traceLogger("writer", failureTrace);
      client = await connect(cluster.addresses, { name: "writer", ttlMs: 20_000, logger });
      const lock = await client.acquire("sequence");
      const leader = (await client.status()).leader;
      let killing: Promise<void> | null = null;
      for (let index = 0; index < 20; index++) {
        if (index === 7) killing = cluster.killServer(cluster.indexOf(leader));
        await withTimeout(lock.append("sequence", `append ${index}\n`), 20_000, `append ${index}`);
      }
      await killing;
      const newLeader = (await cluster.waitForLeader(20_000, leader)).leader;
      assert.notEqual(newLeader, leader);
      assert.equal(lock.signal.aborted, false, "the holder carried on");
      const files = new FilewriterClient(cluster.filewriterAddress);
      const expected = Array.from({ length: 20 }, (_, index) => `append ${index}\n`).join("");
      assert.equal(await readText(files, "sequence"), expected);
      await eventually(
        async () => (await client!.status()).leader === newLeader ? true : undefined,
        5_000,
        "status",
      );
      await lock.release();
    } catch (error) {
      console.error(`client trace:\n${failureTrace.join("\n")}\n${await cluster.logs()}`);
      throw error;
    } finally {
      await client?.close().catch(() => {});
      await cluster.stop();
    }
  },
});

/**
 * Real processes: three servers started with the original command line elect a
 * leader; the client API works end to end (unary and Stream); followers redirect; every
 * bad input gets its specific error and no server crashes.
 */
import assert from "node:assert/strict";
import { delay, expectReason, TestCluster } from "./_cluster.ts";

const mainModule = new URL("../../src/main.ts", import.meta.url).pathname;

Deno.test({
  name: "server: 3 processes elect a leader and serve the client API; bad input is refused",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const cluster = await TestCluster.create(3);
    const filewriterDir = await Deno.makeTempDir({ prefix: "dlock-server-test-fw-" });
    const filewriter = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        mainModule,
        "filewriter",
        cluster.filewriter,
        "--backend",
        `file:${filewriterDir}`,
      ],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    try {
      cluster.startAll();
      const leaderAddress = await cluster.waitForLeader();
      const leader = cluster.client(leaderAddress);
      const follower = cluster.client(
        cluster.servers.find((server) => server.address !== leaderAddress)!.address,
      );

      // Status everywhere; members and filewriter as given on the command line.
      const status = await follower.call("Status", {});
      assert.equal(status.leader, leaderAddress);
      assert.equal(status.role, "follower");
      assert.deepEqual(
        status.members.map((member: { address: string }) => member.address).sort(),
        cluster.servers.map((server) => server.address).sort(),
      );
      assert.equal(status.filewriter, cluster.filewriter);

      // Followers answer NOT_LEADER with the leader's address.
      const notLeader = await expectReason(
        follower.call("OpenSession", { clientName: "x", ttlMs: 10_000, openKey: "k0" }),
        "NOT_LEADER",
      );
      assert.equal(notLeader.leader, leaderAddress);

      // Open, acquire, contend, release.
      const a = await leader.call("OpenSession", { clientName: "a", ttlMs: 20_000, openKey: "ka" });
      const b = await leader.call("OpenSession", { clientName: "b", ttlMs: 20_000, openKey: "kb" });
      assert.ok(a.sessionId > 0 && b.sessionId > a.sessionId);
      const again = await leader.call("OpenSession", {
        clientName: "a",
        ttlMs: 20_000,
        openKey: "ka",
      });
      assert.equal(again.sessionId, a.sessionId, "a retried open returns the same session");

      const grant = await leader.call("Acquire", {
        sessionId: a.sessionId,
        lock: "x",
        requestId: 1,
        wait: true,
      });
      assert.equal(grant.acquired, true);
      const retry = await leader.call("Acquire", {
        sessionId: a.sessionId,
        lock: "x",
        requestId: 1,
        wait: true,
      });
      assert.equal(retry.token, grant.token, "a retried acquire returns the original grant");
      const tried = await leader.call("Acquire", {
        sessionId: b.sessionId,
        lock: "x",
        requestId: 1,
      });
      assert.deepEqual(tried, { acquired: false, token: 0 });
      await expectReason(
        leader.call("Acquire", {
          sessionId: b.sessionId,
          lock: "x",
          requestId: 2,
          wait: true,
          timeoutMs: 200,
        }),
        "TIMEOUT",
      );
      await expectReason(
        leader.call("Release", { sessionId: b.sessionId, lock: "x", requestId: 3 }),
        "NOT_HOLDER",
      );
      const waiting = leader.call("Acquire", {
        sessionId: b.sessionId,
        lock: "x",
        requestId: 4,
        wait: true,
      });
      await delay(100);
      const released = await leader.call("Release", {
        sessionId: a.sessionId,
        lock: "x",
        requestId: 2,
      });
      assert.equal(released.released, true);
      const granted = await waiting;
      assert.equal(granted.acquired, true);
      assert.ok(granted.token > grant.token, "tokens strictly increase");

      // Bad inputs: each gets its specific error.
      const invalid: [string, Record<string, unknown>][] = [
        ["Acquire", { sessionId: b.sessionId, lock: "", requestId: 10 }],
        ["Acquire", { sessionId: b.sessionId, lock: "y".repeat(257), requestId: 10 }],
        ["Acquire", { sessionId: b.sessionId, lock: "bad\nname", requestId: 10 }],
        ["Acquire", { sessionId: 0, lock: "y", requestId: 10 }],
        ["Acquire", { sessionId: b.sessionId, lock: "y", requestId: 0 }],
        ["Release", { sessionId: b.sessionId, lock: "\u0000", requestId: 10 }],
        ["OpenSession", { clientName: "c", ttlMs: 5, openKey: "kc" }],
        ["OpenSession", { clientName: "c", ttlMs: 400_000, openKey: "kc" }],
        ["OpenSession", { clientName: "c".repeat(300), ttlMs: 0, openKey: "kc" }],
        ["CloseSession", { sessionId: b.sessionId, requestId: 0 }],
        ["Append", {
          sessionId: b.sessionId,
          lock: "x",
          token: granted.token,
          file: "../etc",
          data: new Uint8Array(1),
          requestId: "r",
        }],
        ["Append", {
          sessionId: b.sessionId,
          lock: "x",
          token: granted.token,
          file: "f",
          data: new Uint8Array(1),
          requestId: "",
        }],
      ];
      for (const [method, request] of invalid) {
        const error = await expectReason(leader.call(method, request), "INVALID_ARGUMENT");
        assert.equal(error.code, 3, `${method} ${JSON.stringify(request).slice(0, 60)}`);
        assert.match(error.message, /Cannot/);
      }
      await expectReason(
        leader.call("Acquire", { sessionId: 999_999, lock: "y", requestId: 1 }),
        "SESSION_EXPIRED",
      );
      await expectReason(
        leader.call("Append", {
          sessionId: a.sessionId,
          lock: "x",
          token: grant.token,
          file: "f",
          data: new Uint8Array(1),
          requestId: "r1",
        }),
        "NOT_HOLDER",
      );

      // Append through the lock service: checked holder, fenced write, dedupe; a stale
      // token of another lock on the same file is refused by the filewriter.
      const text = new TextEncoder();
      const written = await leader.call("Append", {
        sessionId: b.sessionId,
        lock: "x",
        token: granted.token,
        file: "f",
        data: text.encode("one"),
        requestId: "w1",
      });
      assert.deepEqual(written, { offset: 0, duplicate: false });
      const duplicate = await leader.call("Append", {
        sessionId: b.sessionId,
        lock: "x",
        token: granted.token,
        file: "f",
        data: text.encode("one"),
        requestId: "w1",
      });
      assert.equal(duplicate.duplicate, true);
      const older = await leader.call("Acquire", {
        sessionId: a.sessionId,
        lock: "p",
        requestId: 5,
      });
      const newer = await leader.call("Acquire", {
        sessionId: b.sessionId,
        lock: "q",
        requestId: 5,
      });
      assert.ok(older.token < newer.token);
      await leader.call("Append", {
        sessionId: b.sessionId,
        lock: "q",
        token: newer.token,
        file: "g",
        data: text.encode("new"),
        requestId: "w2",
      });
      await expectReason(
        leader.call("Append", {
          sessionId: a.sessionId,
          lock: "p",
          token: older.token,
          file: "g",
          data: text.encode("old"),
          requestId: "w3",
        }),
        "STALE_FENCE",
      );

      // The multiplexed Stream: open, keepalive of an unknown session, acquire + cancel.
      const stream = leader.stream();
      const answers = new Map<number, Record<string, unknown>>();
      stream.on(
        "data",
        (response: Record<string, unknown>) => answers.set(Number(response.callId), response),
      );
      const answer = async (callId: number) => {
        const deadline = Date.now() + 5_000;
        while (!answers.has(callId) && Date.now() < deadline) await delay(10);
        const response = answers.get(callId);
        assert.ok(response !== undefined, `no answer to call ${callId}`);
        return response;
      };
      stream.write({ callId: 1, openSession: { clientName: "s", ttlMs: 10_000, openKey: "ks" } });
      const opened = (await answer(1)).openSession as { sessionId: number };
      assert.ok(opened.sessionId > 0);
      stream.write({ callId: 2, keepAlive: { sessionId: 424_242 } });
      assert.equal(((await answer(2)).error as { reason: string }).reason, "SESSION_EXPIRED");
      stream.write({ callId: 3, keepAlive: { sessionId: opened.sessionId } });
      assert.equal(((await answer(3)).keepAlive as { ttlMs: number }).ttlMs, 10_000);
      stream.write({
        callId: 4,
        acquire: { sessionId: opened.sessionId, lock: "x", requestId: 1, wait: true },
      });
      await delay(200);
      assert.equal(answers.has(4), false, "a blocked acquire does not answer");
      stream.write({ callId: 5, cancel: { callId: 4 } });
      assert.equal(((await answer(4)).error as { reason: string }).reason, "CANCELLED");
      stream.write({ callId: 6, acquire: { sessionId: opened.sessionId, lock: "", requestId: 2 } });
      assert.equal(((await answer(6)).error as { reason: string }).reason, "INVALID_ARGUMENT");
      stream.write({ callId: 7 });
      assert.equal(((await answer(7)).error as { reason: string }).reason, "INVALID_ARGUMENT");
      stream.write({ callId: 8, status: {} });
      assert.equal(((await answer(8)).status as { role: string }).role, "leader");
      stream.end();

      // A session without keepalives expires after its TTL; its lock goes to the waiter.
      const c = await leader.call("OpenSession", { clientName: "c", ttlMs: 1_000, openKey: "kc1" });
      const d = await leader.call("OpenSession", {
        clientName: "d",
        ttlMs: 30_000,
        openKey: "kd1",
      });
      const held = await leader.call("Acquire", {
        sessionId: c.sessionId,
        lock: "z",
        requestId: 1,
      });
      const startedMs = Date.now();
      const handedOver = await leader.call(
        "Acquire",
        { sessionId: d.sessionId, lock: "z", requestId: 1, wait: true },
        10_000,
      );
      const waitedMs = Date.now() - startedMs;
      assert.ok(handedOver.token > held.token);
      assert.ok(waitedMs >= 700 && waitedMs < 5_000, `granted after ${waitedMs} ms`);
      await expectReason(
        leader.call("Release", { sessionId: c.sessionId, lock: "z", requestId: 2 }),
        "SESSION_EXPIRED",
      );

      // Close releases and grants onward; every server is still up and agrees.
      const closed = await leader.call("CloseSession", { sessionId: b.sessionId, requestId: 20 });
      assert.deepEqual(closed.released, ["x", "q"]);
      assert.equal(await cluster.waitForLeader(5_000), leaderAddress);
      for (const server of cluster.servers) assert.ok(server.child !== null);
    } catch (error) {
      console.error(cluster.logs());
      throw error;
    } finally {
      filewriter.kill("SIGKILL");
      await filewriter.status;
      await cluster.stop();
      await Deno.remove(filewriterDir, { recursive: true }).catch(() => {});
    }
  },
});

/**
 * Integration tests of `dlock filewriter` as a real process: kill -9 and restart,
 * fencing, path tricks and limits over real HTTP.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  postJson,
  rawRequest,
  spawnFilewriterProcess,
  startFilewriterProcess,
} from "./_process.ts";

async function withTempDirectory(body: (root: string) => Promise<void>): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "dlock-filewriter-process-" });
  try {
    await body(root);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

async function readFile(url: string, name: string): Promise<string | null> {
  const response = await fetch(`${url}/v1/files/${encodeURIComponent(name)}`);
  if (response.status === 404) {
    await response.body?.cancel();
    return null;
  }
  assert.equal(response.status, 200);
  return await response.text();
}

Deno.test("filewriter process: an acknowledged append survives kill -9, exactly once", async () => {
  await withTempDirectory(async (root) => {
    const backend = ["--backend", `file:${join(root, "data")}`];
    const body = { lock: "L", token: 12, request_id: "only-once", content: "acknowledged\n" };
    {
      await using first = await startFilewriterProcess(backend);
      const answer = await postJson(`${first.url}/v1/files/kill9:append`, body);
      assert.deepEqual(answer, {
        status: 200,
        body: { offset: 0, size: 13, duplicate: false, token: 12 },
      });
      first.kill("SIGKILL");
      assert.equal((await first.child.status).signal, "SIGKILL");
    }
    await using second = await startFilewriterProcess(backend);
    assert.equal(await readFile(second.url, "kill9"), "acknowledged\n");
    const retry = await postJson(`${second.url}/v1/files/kill9:append`, body);
    assert.deepEqual(retry.body, { offset: 0, size: 13, duplicate: true, token: 12 });
    assert.equal(await readFile(second.url, "kill9"), "acknowledged\n", "the retry is not applied");
    const stale = await postJson(`${second.url}/v1/files/kill9:append`, {
      ...body,
      token: 11,
      request_id: "x",
    });
    assert.equal(stale.status, 409, "the fence survives the restart too");
  });
});

type Sent = {
  text: string;
  token: number;
  requestId: string;
  sentAtMs: number;
  ackedAtMs?: number;
  offset?: number;
};

/**
 * Writers append concurrently (tokens rising over time, so some are refused) until enough
 * were acknowledged, then the filewriter is killed with SIGKILL mid-stream.
 */
async function appendUntilKilled(
  url: string,
  kill: () => void,
): Promise<{ acked: Sent[]; unacked: Sent[]; stale: Sent[] }> {
  const writers = 6;
  const ackedBeforeKill = 60;
  const acked: Sent[] = [];
  const unacked: Sent[] = [];
  const stale: Sent[] = [];
  let token = 1;
  let killed = false;
  const hardStop = setTimeout(() => {
    killed = true;
    kill();
  }, 15_000);
  const writer = async (index: number) => {
    for (let sequence = 0; sequence < 10_000; sequence += 1) {
      if (sequence % 5 === 4) token += 1;
      const ownToken = Math.max(1, token - (index % 3)); // some writers lag: they get refused
      const sent: Sent = {
        text: `t${String(ownToken).padStart(5, "0")}:w${index}:s${
          String(sequence).padStart(5, "0")
        };`,
        token: ownToken,
        requestId: `w${index}-s${sequence}`,
        sentAtMs: performance.now(),
      };
      try {
        const answer = await postJson(`${url}/v1/files/stream:append`, {
          lock: "L",
          token: sent.token,
          request_id: sent.requestId,
          content: sent.text,
        }, AbortSignal.timeout(10_000));
        if (answer.status === 409) {
          stale.push(sent);
          continue;
        }
        assert.equal(answer.status, 200, JSON.stringify(answer));
        sent.ackedAtMs = performance.now();
        sent.offset = Number(answer.body.offset);
        acked.push(sent);
        if (acked.length >= ackedBeforeKill && !killed) {
          killed = true;
          // A little later, at a random point of the requests in flight.
          setTimeout(kill, Math.random() * 4);
        }
      } catch (error) {
        if (error instanceof assert.AssertionError) throw error;
        unacked.push(sent); // no reply: the process died with this request in flight
        return;
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: writers }, (_, index) => writer(index)));
  } finally {
    clearTimeout(hardStop);
  }
  return { acked, unacked, stale };
}

function parseRecords(content: string): string[] {
  const records = content.split(";").slice(0, -1).map((record) => `${record};`);
  assert.equal(records.join(""), content, "the file holds only whole records");
  return records;
}

function checkFile(content: string, acked: Sent[], attempted: Set<string>): string[] {
  const records = parseRecords(content);
  assert.equal(new Set(records).size, records.length, "no append is in the file twice");
  let previous = 0;
  const offsets = new Map<string, number>();
  let offset = 0;
  for (const record of records) {
    const token = Number(record.slice(1, 6));
    assert.ok(token >= previous, `token ${token} follows ${previous}: tokens never decrease`);
    previous = token;
    assert.ok(attempted.has(record), `${record} was sent by a writer`);
    offsets.set(record, offset);
    offset += record.length;
  }
  for (const sent of acked) {
    assert.equal(offsets.get(sent.text), sent.offset, `acknowledged ${sent.text} is at its offset`);
  }
  return records;
}

Deno.test("filewriter process: kill -9 during concurrent appends loses no acknowledged append", async () => {
  await withTempDirectory(async (root) => {
    const backend = ["--backend", `file:${join(root, "data")}`];
    let outcome: Awaited<ReturnType<typeof appendUntilKilled>>;
    {
      await using first = await startFilewriterProcess(backend);
      outcome = await appendUntilKilled(first.url, () => first.kill("SIGKILL"));
      assert.equal((await first.child.status).signal, "SIGKILL");
    }
    const { acked, unacked, stale } = outcome;
    assert.ok(acked.length >= 60, `acknowledged ${acked.length}`);
    assert.ok(
      unacked.length >= 1 && unacked.length <= 6,
      `in flight at the kill: ${unacked.length}`,
    );
    for (const a of acked) {
      for (const b of acked) {
        if (a.ackedAtMs! < b.sentAtMs) {
          assert.ok(a.offset! < b.offset!, `${a.text} was acknowledged before ${b.text} was sent`);
        }
      }
    }
    const attempted = new Set([...acked, ...unacked, ...stale].map((sent) => sent.text));
    await using second = await startFilewriterProcess(backend);
    const before = checkFile((await readFile(second.url, "stream")) ?? "", acked, attempted);
    for (const sent of stale) {
      assert.ok(!before.includes(sent.text), `refused ${sent.text} is absent`);
    }
    const ackedBeforeKill = acked.length;
    // Retry every request that got no reply, twice: each applies at most once.
    for (const sent of unacked) {
      const body = { lock: "L", token: sent.token, request_id: sent.requestId, content: sent.text };
      const first = await postJson(`${second.url}/v1/files/stream:append`, body);
      const again = await postJson(`${second.url}/v1/files/stream:append`, body);
      if (first.status === 409) {
        assert.equal(again.status, 409);
        assert.ok(!before.includes(sent.text), "a refused retry was never applied");
        continue;
      }
      assert.equal(first.status, 200);
      assert.equal(
        first.body.duplicate,
        before.includes(sent.text),
        "applied before the kill => duplicate",
      );
      assert.deepEqual(again.body, { ...first.body, duplicate: true });
      sent.offset = Number(first.body.offset);
      acked.push(sent);
    }
    const after = checkFile((await readFile(second.url, "stream")) ?? "", acked, attempted);
    const appliedUnacked = unacked.filter((sent) => before.includes(sent.text)).length;
    console.log(
      `kill -9 stream: ${ackedBeforeKill} acknowledged, ${stale.length} refused as stale, ` +
        `${unacked.length} in flight at the kill (${appliedUnacked} of them applied before it), ` +
        `${after.length} records after retries`,
    );
    assert.ok(after.length >= before.length);
    const meta = await (await fetch(`${second.url}/v1/files/stream/meta`)).json();
    assert.equal(meta.appends, after.length);
  });
});

Deno.test("filewriter process: stale tokens, path tricks and oversized content are refused", async () => {
  await withTempDirectory(async (root) => {
    const dataDirectory = join(root, "data");
    await using fw = await startFilewriterProcess(["--backend", `file:${dataDirectory}`]);
    const url = fw.url;
    const port = Number(new URL(url).port);
    assert.equal(
      (await postJson(`${url}/write`, { file_id: 1, lock: "L", token: 7, content: "holder 2;" }))
        .status,
      200,
    );
    const stale = await postJson(`${url}/write`, {
      file_id: 1,
      lock: "L",
      token: 5,
      content: "holder 1;",
    });
    assert.equal(stale.status, 409);
    assert.equal(stale.body.error, "STALE_FENCE");
    assert.equal(stale.body.highest_token, 7);
    assert.equal(
      stale.body.message,
      "Cannot append to file file_1 as token 5 is older than token 7 already accepted",
    );
    assert.equal(await (await fetch(`${url}/read/1`)).text(), "holder 2;", "file unchanged");

    const fence = JSON.stringify({ lock: "L", token: 1, content: "evil" });
    const tricks = [
      "/v1/files/../../escape:append",
      "/v1/files/..%2F..%2Fescape:append",
      "/v1/files/%2E%2E%2Fescape:append",
      "/v1/files/a%2F..%2F..%2Fescape:append",
      "/v1/files/..%5Cescape:append",
      "/v1/files/%2Ftmp%2Fescape:append",
      "/v1/files/nul%00byte:append",
      "/v1/files/new%0Aline:append",
      `/v1/files/${"n".repeat(256)}:append`,
      "/v1/files/a/b:append",
    ];
    for (const target of tricks) {
      const answer = await rawRequest(port, "POST", target, fence);
      assert.ok(answer.status >= 400 && answer.status < 500, `${target} -> ${answer.status}`);
    }
    for (const file of ["../escape", "..", "/etc/passwd", "a\\b", "x\u0000y"]) {
      const answer = await postJson(`${url}/write`, { file, lock: "L", token: 1, content: "evil" });
      assert.equal(answer.status, 400, file);
      assert.match(String(answer.body.message), /^Cannot use the file name as .+: received /);
    }
    assert.equal((await rawRequest(port, "GET", "/read/..%2F..%2FFORMAT")).status, 400);

    const limit = 1024 * 1024;
    const tooBig = await postJson(`${url}/v1/files/big:append`, {
      lock: "L",
      token: 1,
      content: "z".repeat(limit + 1),
    });
    assert.equal(tooBig.status, 413);
    assert.equal(tooBig.body.error, "CONTENT_TOO_LARGE");
    assert.equal(await readFile(url, "big"), null, "nothing appended");
    const justFits = await postJson(`${url}/v1/files/big:append`, {
      lock: "L",
      token: 1,
      content: "z".repeat(limit),
    });
    assert.equal(justFits.status, 200);

    assert.deepEqual([...Deno.readDirSync(root)].map((entry) => entry.name), ["data"]);
    const logs = [...Deno.readDirSync(join(dataDirectory, "files"))].map((entry) => entry.name)
      .sort();
    assert.deepEqual(logs, ["big.log", "file_1.log"], "only the two real files exist");
  });
});

Deno.test("filewriter process: flags, positional address, SIGTERM and a corrupt data directory", async () => {
  await withTempDirectory(async (root) => {
    const dataDirectory = join(root, "data");
    {
      await using fw = await startFilewriterProcess([
        "--backend",
        `file:${dataDirectory}`,
        "--max-content-bytes",
        "1000",
        "--log-format",
        "json",
      ]);
      const over = await postJson(`${fw.url}/v1/files/f:append`, {
        lock: "L",
        token: 1,
        content: "q".repeat(1001),
      });
      assert.equal(over.status, 413);
      assert.equal(
        (await postJson(`${fw.url}/v1/files/f:append`, { lock: "L", token: 1, content: "ok" }))
          .status,
        200,
      );
      fw.kill("SIGTERM");
      const status = await fw.exited();
      assert.equal(status.code, 0, "SIGTERM stops cleanly");
      // Only the filewriter's own lines are JSON (deno itself may warn on stderr).
      const lines = fw.output().stderr.split("\n").filter((line) => line.startsWith("{"))
        .map((line) => JSON.parse(line));
      assert.deepEqual(lines.map((line) => line.message), ["stopping", "stopped"]);
    }
    // The original form: the address as the only positional argument.
    const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (probe.addr as Deno.NetAddr).port;
    probe.close();
    const positional = spawnFilewriterProcess([
      `127.0.0.1:${port}`,
      "--backend",
      `file:${dataDirectory}`,
    ]);
    try {
      const deadline = Date.now() + 20_000;
      while (!positional.output().stdout.includes("listening") && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      assert.match(
        positional.output().stdout,
        new RegExp(`listening on http://127\\.0\\.0\\.1:${port}`),
      );
      assert.equal(await readFile(`http://127.0.0.1:${port}`, "f"), "ok");
      positional.child.kill("SIGINT");
      assert.equal((await positional.child.status).code, 0, "SIGINT stops cleanly");
    } finally {
      try {
        positional.child.kill("SIGKILL");
      } catch { /* already exited */ }
      await positional.child.status;
      await positional.stderrDone;
    }
    // Damage the log in the middle: the filewriter refuses to start and changes nothing.
    const log = join(dataDirectory, "files", "f.log");
    const bytes = await Deno.readFile(log);
    bytes[20] = bytes[20]! ^ 0x55;
    const damaged = new Uint8Array([...bytes, ...bytes]);
    await Deno.writeFile(log, damaged);
    const refused = spawnFilewriterProcess([
      "--listen",
      "127.0.0.1:0",
      "--backend",
      `file:${dataDirectory}`,
    ]);
    const exit = await refused.child.status;
    await refused.stderrDone;
    assert.equal(exit.code, 1);
    assert.match(
      refused.output().stderr,
      /cannot open backend .*Cannot open the data directory as the record at byte 0 .* fails its checksum/,
    );
    assert.deepEqual(await Deno.readFile(log), damaged, "never reset");
  });
});

Deno.test("filewriter process: a damaged complete last record stops the start instead of lowering the fence", async () => {
  await withTempDirectory(async (root) => {
    const dataDirectory = join(root, "data");
    const args = ["--backend", `file:${dataDirectory}`];
    const log = join(dataDirectory, "files", "f3.log");
    let lastRecordAt = 0;
    {
      await using fw = await startFilewriterProcess(args);
      for (const token of [19, 23, 27]) {
        if (token === 27) lastRecordAt = (await Deno.stat(log)).size; // appends reply after the write
        const answer = await postJson(`${fw.url}/v1/files/f3:append`, {
          lock: "L",
          token,
          content: `token ${token};`,
        });
        assert.equal(answer.status, 200, JSON.stringify(answer));
      }
      fw.kill("SIGTERM");
      assert.equal((await fw.exited()).code, 0);
    }
    const intact = await Deno.readFile(log);
    const lastRecordBytes = intact.length - lastRecordAt;
    assert.ok(lastRecordAt > 0 && lastRecordBytes > 16);
    // The hand repro: two bytes of the acknowledged record with token 27 overwritten in place.
    const damaged = intact.slice();
    damaged.set(new TextEncoder().encode("XX"), intact.length - 5);
    await Deno.writeFile(log, damaged);
    const refused = spawnFilewriterProcess(["--listen", "127.0.0.1:0", ...args]);
    // Bounded: a filewriter that wrongly "repairs" the log starts serving and never exits.
    let timer: ReturnType<typeof setTimeout> | undefined;
    const exit = await Promise.race([
      refused.child.status,
      new Promise<null>((resolve) => timer = setTimeout(() => resolve(null), 20_000)),
    ]);
    clearTimeout(timer);
    if (exit === null) refused.child.kill("SIGKILL");
    await refused.child.status;
    await refused.stderrDone;
    assert.ok(exit !== null, `the filewriter must refuse to start: ${refused.output().stdout}`);
    const { stdout, stderr } = refused.output();
    assert.notEqual(exit.code, 0);
    assert.ok(!stdout.includes("listening"), "it never serves");
    assert.doesNotMatch(stderr, /truncated a torn record/);
    assert.ok(
      stderr.includes(
        `the last record of ${log}, at byte ${lastRecordAt} (${lastRecordBytes} bytes), is complete but fails its checksum`,
      ),
      stderr,
    );
    assert.ok(stderr.includes(`truncate -s ${lastRecordAt} ${log}`), stderr);
    assert.deepEqual(await Deno.readFile(log), damaged, "the log is unchanged");
    // The operator's way out, as the message says: cut the record, accepting its loss.
    await Deno.truncate(log, lastRecordAt);
    await using after = await startFilewriterProcess(args);
    assert.equal(await readFile(after.url, "f3"), "token 19;token 23;");
    const meta = await (await fetch(`${after.url}/v1/files/f3/meta`)).json();
    assert.equal(meta.highest_token, 23);
  });
});

function countTornRepairs(stderr: string): number {
  return (stderr.match(/truncated a torn record/g) ?? []).length;
}

Deno.test("filewriter process: kill -9 in the middle of large writes, restart repairs the torn tail", async () => {
  await withTempDirectory(async (root) => {
    const args = ["--backend", `file:${join(root, "data")}`, "--max-content-bytes", "4194304"];
    const appendBytes = 4 * 1024 * 1024;
    const idBytes = 32;
    const acknowledged = new Set<string>();
    const attempted = new Set<string>();
    let tornRepairs = 0;
    const roundsMax = 6;
    for (let round = 0; round < roundsMax && tornRepairs === 0; round += 1) {
      await using fw = await startFilewriterProcess(args);
      let stopped = false;
      const writer = async (index: number) => {
        for (let sequence = 0; !stopped && sequence < 100; sequence += 1) {
          const id = `r${round}-w${index}-s${sequence}`.padEnd(idBytes, ".");
          attempted.add(id);
          const answer = await postJson(`${fw.url}/v1/files/large:append`, {
            lock: "L",
            token: 1,
            request_id: id,
            content: id.repeat(appendBytes / idBytes),
          }, AbortSignal.timeout(20_000)).catch(() => null);
          if (answer === null) return;
          assert.equal(answer.status, 200);
          acknowledged.add(id);
        }
      };
      const writers = [writer(0), writer(1)];
      await new Promise((resolve) => setTimeout(resolve, 150 + Math.random() * 250));
      fw.kill("SIGKILL");
      stopped = true;
      await Promise.all(writers);
      await fw.exited();
      tornRepairs += countTornRepairs(fw.output().stderr); // from this run's start-up
    }
    await using last = await startFilewriterProcess(args);
    const content = (await readFile(last.url, "large")) ?? "";
    last.kill("SIGTERM");
    assert.equal((await last.exited()).code, 0);
    tornRepairs += countTornRepairs(last.output().stderr);
    assert.equal(content.length % appendBytes, 0, "only whole appends are visible");
    const seen = new Set<string>();
    for (let start = 0; start < content.length; start += appendBytes) {
      const id = content.slice(start, start + idBytes);
      assert.ok(attempted.has(id), `${id} was sent`);
      assert.ok(!seen.has(id), `${id} is in the file once`);
      seen.add(id);
      assert.equal(content.slice(start, start + appendBytes), id.repeat(appendBytes / idBytes));
    }
    for (const id of acknowledged) assert.ok(seen.has(id), `acknowledged ${id} survived`);
    console.log(
      `kill -9 large writes: ${acknowledged.size} acknowledged, ${seen.size} in the file, ` +
        `${tornRepairs} torn tail(s) repaired on restart`,
    );
  });
});

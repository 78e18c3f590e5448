import assert from "node:assert/strict";
import { startTestFilewriter } from "./_testing.ts";

type Answer = { status: number; body: Record<string, unknown>; headers: Headers };

async function call(url: string, init: RequestInit = {}): Promise<Answer> {
  const response = await fetch(url, init);
  const text = await response.text();
  return { status: response.status, body: JSON.parse(text), headers: response.headers };
}

function post(url: string, body: unknown): Promise<Answer> {
  return call(url, {
    method: "POST",
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

async function readText(url: string): Promise<[number, string]> {
  const response = await fetch(url);
  return [response.status, await response.text()];
}

Deno.test("http: versioned API appends, reads, reports meta and health", async () => {
  await using fw = await startTestFilewriter();
  const base = fw.server.url;
  const appendUrl = `${base}/v1/files/notes.txt:append`;
  const first = await post(appendUrl, { lock: "L", token: 3, request_id: "r1", content: "hello " });
  assert.deepEqual([first.status, first.body], [200, {
    offset: 0,
    size: 6,
    duplicate: false,
    token: 3,
  }]);
  const binary = await post(appendUrl, {
    lock: "L",
    token: 3,
    request_id: "r2",
    content_base64: btoa("w\u00ffrld"),
  });
  assert.deepEqual(binary.body, { offset: 6, size: 5, duplicate: false, token: 3 });
  const again = await post(appendUrl, { lock: "L", token: 3, request_id: "r1", content: "hello " });
  assert.deepEqual(again.body, { offset: 0, size: 6, duplicate: true, token: 3 });
  const response = await fetch(`${base}/v1/files/notes.txt`);
  assert.equal(response.headers.get("content-type"), "application/octet-stream");
  assert.deepEqual(
    new Uint8Array(await response.arrayBuffer()),
    new Uint8Array([...new TextEncoder().encode("hello w"), 0xff, 0x72, 0x6c, 0x64]),
  );
  const meta = await call(`${base}/v1/files/notes.txt/meta`);
  assert.deepEqual(meta.body, { highest_token: 3, lock: "L", size: 11, appends: 2 });
  assert.deepEqual((await call(`${base}/healthz`)).body, { status: "ok" });
  const missing = await call(`${base}/v1/files/absent`);
  assert.deepEqual([missing.status, missing.body.error], [404, "NOT_FOUND"]);
  assert.equal((await call(`${base}/v1/files/absent/meta`)).status, 404);
  const encoded = await post(
    `${base}/v1/files/${encodeURIComponent("a name:with spaces")}:append`,
    { lock: "L", token: 1, content: "x" },
  );
  assert.equal(encoded.status, 200);
  assert.deepEqual(await readText(`${base}/v1/files/a%20name%3Awith%20spaces`), [200, "x"]);
});

Deno.test("http: original API writes file_N and reads /read/N", async () => {
  await using fw = await startTestFilewriter();
  const base = fw.server.url;
  const write = await post(`${base}/write`, {
    file_id: 3,
    content: "abc",
    lock: "L",
    token: 1,
    request_id: "w1",
  });
  assert.deepEqual([write.status, write.body], [200, {
    offset: 0,
    size: 3,
    duplicate: false,
    token: 1,
  }]);
  await post(`${base}/write`, { file: "file_3", content: "def", lock: "L", token: 2 });
  assert.deepEqual(await readText(`${base}/read/3`), [200, "abcdef"]);
  assert.deepEqual(await readText(`${base}/v1/files/file_3`), [200, "abcdef"]);
  const named = await post(`${base}/write`, { file: "report", content: "r", lock: "L", token: 1 });
  assert.equal(named.status, 200);
  assert.deepEqual(await readText(`${base}/read/report`), [200, "r"]);
  assert.equal((await call(`${base}/read/9`)).status, 404);
  for (const bad of [{ file_id: -1 }, { file_id: "3" }, { file_id: 1, file: "x" }, {}]) {
    const answer = await post(`${base}/write`, { ...bad, content: "x", lock: "L", token: 1 });
    assert.deepEqual(
      [answer.status, answer.body.error],
      [400, "INVALID_ARGUMENT"],
      JSON.stringify(bad),
    );
  }
});

Deno.test("http: a stale token gets 409 with the highest token, the file is unchanged", async () => {
  await using fw = await startTestFilewriter();
  const url = `${fw.server.url}/v1/files/X:append`;
  assert.equal((await post(url, { lock: "L", token: 7, content: "new holder;" })).status, 200);
  const stale = await post(url, {
    lock: "L",
    token: 5,
    request_id: "late",
    content: "old holder;",
  });
  assert.equal(stale.status, 409);
  assert.deepEqual(stale.body, {
    error: "STALE_FENCE",
    message: "Cannot append to file X as token 5 is older than token 7 already accepted",
    highest_token: 7,
    lock: "L",
  });
  assert.deepEqual(await readText(`${fw.server.url}/v1/files/X`), [200, "new holder;"]);
  assert.equal((await post(url, { lock: "L", token: 7, content: "same holder;" })).status, 200);
});

Deno.test("http: bad input gets a 4xx JSON error and writes nothing", async () => {
  await using fw = await startTestFilewriter(100);
  const base = fw.server.url;
  const fence = { lock: "L", token: 1, content: "x" };
  const cases: [string, string, unknown, number][] = [
    ["missing token", "f", { lock: "L", content: "x" }, 400],
    ["missing lock", "f", { token: 1, content: "x" }, 400],
    ["negative token", "f", { ...fence, token: -2 }, 400],
    ["string token", "f", { ...fence, token: "1" }, 400],
    ["malformed JSON", "f", '{"lock":', 400],
    ["array body", "f", "[1]", 400],
    ["no content", "f", { lock: "L", token: 1 }, 400],
    ["both contents", "f", { ...fence, content_base64: "eA==" }, 400],
    ["bad base64", "f", { lock: "L", token: 1, content_base64: "***" }, 400],
    ["empty request id", "f", { ...fence, request_id: "" }, 400],
    ["encoded slash", "a%2Fb", fence, 400],
    ["encoded backslash", "a%5Cb", fence, 400],
    ["dot dot", "..", fence, 400],
    ["dot", ".", fence, 400],
    ["encoded dot", "%2E", fence, 400],
    ["encoded dot dot", "%2E%2E%2Fescape", fence, 400],
    ["dots inside", "a..b", fence, 400],
    ["NUL", "a%00b", fence, 400],
    ["newline", "a%0Ab", fence, 400],
    ["256 bytes", "x".repeat(256), fence, 400],
    ["bad percent", "%E0%A4%A", fence, 400],
    ["over the limit", "f", { ...fence, content: "y".repeat(101) }, 413],
    ["over the limit in base64", "f", {
      lock: "L",
      token: 1,
      content_base64: btoa("y".repeat(101)),
    }, 413],
  ];
  for (const [name, file, body, status] of cases) {
    const answer = await post(`${base}/v1/files/${file}:append`, body);
    assert.equal(answer.status, status, name);
    assert.equal(typeof answer.body.error, "string", name);
    assert.match(String(answer.body.message), /^Cannot .+ as .+/, name);
  }
  const huge = await call(`${base}/v1/files/f:append`, {
    method: "POST",
    body: "x".repeat(800_000),
  });
  assert.deepEqual([huge.status, huge.body.error], [413, "CONTENT_TOO_LARGE"]);
  assert.equal(
    (await post(`${base}/v1/files/f:append`, { ...fence, content: "y".repeat(100) })).status,
    200,
  );
  const outside = [...Deno.readDirSync(fw.root)].map((entry) => entry.name);
  assert.deepEqual(outside, ["data"], "nothing is created outside the data directory");
  const logs = [...Deno.readDirSync(`${fw.root}/data/files`)].map((entry) => entry.name);
  assert.deepEqual(logs, ["f.log"]);
});

Deno.test("http: unknown routes get 404 and wrong methods 405", async () => {
  await using fw = await startTestFilewriter();
  const base = fw.server.url;
  assert.equal((await call(`${base}/nope`)).status, 404);
  assert.equal((await call(`${base}/v1/other`)).status, 404);
  const traversal = await call(`${base}/v1/files/../../etc/passwd`);
  assert.equal(traversal.status, 404, "URL dot segments are resolved before routing");
  const cases: [string, string, string][] = [
    ["GET", "/v1/files/f:append", "POST"],
    ["PUT", "/v1/files/f", "GET"],
    ["DELETE", "/v1/files/f/meta", "GET"],
    ["GET", "/write", "POST"],
    ["POST", "/read/3", "GET"],
    ["POST", "/healthz", "GET"],
  ];
  for (const [method, path, allowed] of cases) {
    const answer = await call(base + path, { method });
    assert.equal(answer.status, 405, `${method} ${path}`);
    assert.equal(answer.headers.get("allow"), allowed);
    assert.equal(answer.body.error, "METHOD_NOT_ALLOWED");
  }
});

import assert from "node:assert/strict";
import { InvalidArgumentError, StaleFenceError } from "../errors.ts";
import {
  FilewriterClient,
  FilewriterStaleFenceError,
  FilewriterUnavailableError,
  normaliseBaseUrl,
} from "./client.ts";
import { startTestFilewriter } from "./_testing.ts";

Deno.test("client: normalises base URLs", () => {
  assert.equal(normaliseBaseUrl("localhost:8080"), "http://localhost:8080");
  assert.equal(normaliseBaseUrl("http://127.0.0.1:9/"), "http://127.0.0.1:9");
  assert.equal(normaliseBaseUrl("https://files.example/prefix/"), "https://files.example/prefix");
  assert.throws(() => normaliseBaseUrl("ftp://x"), InvalidArgumentError);
});

Deno.test("client: appends, dedupes, reads and reports meta", async () => {
  await using fw = await startTestFilewriter();
  const client = new FilewriterClient(`127.0.0.1:${fw.server.port}`);
  assert.equal(await client.read("log"), null);
  assert.equal(await client.meta("log"), null);
  const first = await client.append({
    file: "log",
    lock: "L",
    token: 4,
    requestId: "a",
    data: "one\n",
  });
  assert.deepEqual(first, { offset: 0, size: 4, duplicate: false, token: 4, requestId: "a" });
  const retry = await client.append({
    file: "log",
    lock: "L",
    token: 4,
    requestId: "a",
    data: "one\n",
  });
  assert.equal(retry.duplicate, true);
  const bytes = await client.append({
    file: "log",
    lock: "L",
    token: 4,
    data: new Uint8Array([0, 255, 10]),
  });
  assert.equal(bytes.offset, 4);
  assert.match(bytes.requestId, /^[0-9a-f-]{36}$/, "a request id is generated");
  assert.deepEqual(
    await client.read("log"),
    new Uint8Array([...new TextEncoder().encode("one\n"), 0, 255, 10]),
  );
  assert.deepEqual(await client.meta("log"), { highestToken: 4, lock: "L", size: 7, appends: 2 });
  const big = await client.append({ file: "log", lock: "L", token: 5n, requestId: "", data: "" });
  assert.deepEqual([big.token, big.duplicate, big.requestId.length], [5, false, 36]);
  await assert.rejects(
    () => client.append({ file: "log", lock: "L", token: 2n ** 60n, data: "x" }),
    InvalidArgumentError,
  );
  const odd = "name with / slash";
  await assert.rejects(
    () => client.append({ file: odd, lock: "L", token: 1, data: "x" }),
    InvalidArgumentError,
  );
});

Deno.test("client: maps refusals to typed errors", async () => {
  await using fw = await startTestFilewriter(10);
  const client = new FilewriterClient(fw.server.url);
  await client.append({ file: "f", lock: "L", token: 9, data: "x" });
  const stale = await client.append({ file: "f", lock: "L", token: 8, data: "y" }).catch((error) =>
    error
  );
  assert.ok(stale instanceof StaleFenceError);
  assert.ok(stale instanceof FilewriterStaleFenceError);
  assert.equal(stale.highestToken, 9);
  assert.equal(stale.reason, "STALE_FENCE");
  assert.match(stale.message, /token 8 is older than token 9/);
  await assert.rejects(
    () => client.append({ file: "f", lock: "L", token: 9, data: "y".repeat(11) }),
    InvalidArgumentError,
  );
  await assert.rejects(
    () => client.append({ file: "f", lock: "", token: 9, data: "y" }),
    InvalidArgumentError,
  );
});

Deno.test("client: an unreachable filewriter is a FilewriterUnavailableError", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  const client = new FilewriterClient(`127.0.0.1:${port}`, {
    attemptsMax: 2,
    retryDelayMs: 10,
    timeoutMs: 2_000,
  });
  const error = await client.append({ file: "f", lock: "L", token: 1, data: "x" }).catch((e) => e);
  assert.ok(error instanceof FilewriterUnavailableError, String(error));
  assert.equal(error.reason, "UNAVAILABLE");
  await assert.rejects(() => client.read("f"), FilewriterUnavailableError);
});

/**
 * The conformance suite every {@link FileBackend} must pass; `*_backend_test.ts` run it
 * against each backend. Each step uses its own file names (under `factory.prefix`), so a
 * shared database is fine.
 *
 * @module
 */
import assert from "node:assert/strict";
import { InvalidArgumentError } from "../errors.ts";
import type { AppendOutcome, AppendRequest, AppendResult, FileBackend } from "./backend.ts";

/** How the suite opens the backend under test. */
export type BackendFactory = {
  /** Prefix of every file name the suite uses (unique per run). */
  prefix: string;
  /**
   * Opens the backend over the same storage each time (the suite closes what it opens).
   * `requestIdsPerFileMax` overrides the dedupe bound.
   */
  open(options?: { requestIdsPerFileMax?: number }): Promise<FileBackend>;
};

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function request(
  file: string,
  token: number,
  data: string | Uint8Array,
  requestId: string | null = null,
  lock = "lock-a",
): AppendRequest {
  return {
    file,
    lock,
    token,
    requestId,
    data: typeof data === "string" ? encoder.encode(data) : data,
  };
}

function accepted(outcome: AppendOutcome): AppendResult {
  assert.equal(outcome.status, "ok", `expected an accepted append, got ${JSON.stringify(outcome)}`);
  if (outcome.status !== "ok") throw new Error("unreachable");
  return outcome.result;
}

async function readText(backend: FileBackend, file: string): Promise<string | null> {
  const content = await backend.read(file);
  return content === null ? null : decoder.decode(content);
}

/** Runs every conformance step as a sub-step of `t`. */
export async function runBackendConformance(
  t: Deno.TestContext,
  factory: BackendFactory,
): Promise<void> {
  const steps: [string, (backend: FileBackend, file: string) => Promise<void>][] = [
    ["appends and reads", appendsAndReads],
    ["rejects a lower token, accepts an equal one", fencing],
    ["dedupes a repeated request id", dedupe],
    ["stores binary and empty appends", binaryAndEmpty],
    ["rejects invalid input", invalidInput],
    ["keeps concurrent appends from many tokens exact and ordered", concurrentAppends],
  ];
  for (const [name, body] of steps) {
    await t.step(name, async () => {
      const backend = await factory.open();
      try {
        await body(backend, `${factory.prefix}-${name.replaceAll(" ", "-").replaceAll(",", "")}`);
      } finally {
        await backend.close();
      }
    });
  }
  await t.step("keeps files, fences and request ids across a reopen", () => reopen(factory));
  await t.step("remembers the last N request ids", () => boundedDedupe(factory));
}

async function appendsAndReads(backend: FileBackend, file: string): Promise<void> {
  assert.equal(await backend.read(file), null);
  assert.equal(await backend.meta(file), null);
  assert.deepEqual(accepted(await backend.append(request(file, 1, "ab", "r1"))), {
    offset: 0,
    size: 2,
    token: 1,
    duplicate: false,
  });
  assert.deepEqual(accepted(await backend.append(request(file, 1, "cde", "r2"))), {
    offset: 2,
    size: 3,
    token: 1,
    duplicate: false,
  });
  assert.equal(await readText(backend, file), "abcde");
  assert.deepEqual(await backend.meta(file), {
    highestToken: 1,
    lock: "lock-a",
    size: 5,
    appends: 2,
  });
  const other = `${file}-other`;
  accepted(await backend.append(request(other, 9, "x")));
  assert.equal(await readText(backend, other), "x");
  assert.equal(await readText(backend, file), "abcde", "files are independent");
}

async function fencing(backend: FileBackend, file: string): Promise<void> {
  accepted(await backend.append(request(file, 5, "five;")));
  assert.deepEqual(await backend.append(request(file, 4, "four;")), {
    status: "stale",
    highestToken: 5,
    lock: "lock-a",
  });
  assert.equal(await readText(backend, file), "five;", "a stale append leaves the file unchanged");
  accepted(await backend.append(request(file, 5, "five-again;")));
  const otherLock = await backend.append(request(file, 5, "impostor;", null, "lock-b"));
  assert.equal(otherLock.status, "stale", "an equal token of another lock is refused");
  assert.equal(
    accepted(await backend.append(request(file, 7, "seven;", null, "lock-b"))).offset,
    16,
  );
  assert.equal((await backend.append(request(file, 5, "late;"))).status, "stale");
  assert.equal(await readText(backend, file), "five;five-again;seven;");
  assert.deepEqual(await backend.meta(file), {
    highestToken: 7,
    lock: "lock-b",
    size: 22,
    appends: 3,
  });
}

async function dedupe(backend: FileBackend, file: string): Promise<void> {
  const first = accepted(await backend.append(request(file, 3, "once;", "req-1")));
  const again = accepted(await backend.append(request(file, 3, "once;", "req-1")));
  assert.deepEqual(again, { ...first, duplicate: true });
  const changed = accepted(await backend.append(request(file, 3, "other data", "req-1")));
  assert.deepEqual(changed, { ...first, duplicate: true }, "the request id alone identifies it");
  accepted(await backend.append(request(file, 8, "newer;", "req-2")));
  const lateRetry = accepted(await backend.append(request(file, 3, "once;", "req-1")));
  assert.deepEqual(
    lateRetry,
    { ...first, duplicate: true },
    "a retry of an applied write is no stale write",
  );
  accepted(await backend.append(request(file, 8, "no-id;")));
  accepted(await backend.append(request(file, 8, "no-id;")));
  assert.equal(await readText(backend, file), "once;newer;no-id;no-id;");
  assert.equal((await backend.meta(file))?.appends, 4);
}

async function binaryAndEmpty(backend: FileBackend, file: string): Promise<void> {
  const bytes = Uint8Array.from({ length: 256 }, (_, index) => index);
  accepted(await backend.append(request(file, 1, bytes, "bin")));
  assert.deepEqual(accepted(await backend.append(request(file, 1, new Uint8Array(0), "empty"))), {
    offset: 256,
    size: 0,
    token: 1,
    duplicate: false,
  });
  accepted(await backend.append(request(file, 2, bytes.subarray(0, 3))));
  const content = await backend.read(file);
  assert.deepEqual(content, Uint8Array.from([...bytes, 0, 1, 2]));
  const empty = `${file}-only-empty`;
  accepted(await backend.append(request(empty, 1, "")));
  assert.deepEqual(
    await backend.read(empty),
    new Uint8Array(0),
    "an empty append creates the file",
  );
}

async function invalidInput(backend: FileBackend, file: string): Promise<void> {
  const badNames = [
    "",
    "a/b",
    "a\\b",
    "..",
    ".",
    "a..b",
    "nul\0",
    "tab\t",
    "x".repeat(256),
    "é".repeat(128),
  ];
  for (const name of badNames) {
    await assert.rejects(() => backend.append(request(name, 1, "x")), InvalidArgumentError, name);
    await assert.rejects(() => backend.read(name), InvalidArgumentError, name);
  }
  await assert.rejects(() => backend.append(request(file, -1, "x")), InvalidArgumentError);
  await assert.rejects(() => backend.append(request(file, 1.5, "x")), InvalidArgumentError);
  await assert.rejects(() => backend.append(request(file, 1, "x", null, "")), InvalidArgumentError);
  await assert.rejects(() => backend.append(request(file, 1, "x", "")), InvalidArgumentError);
  assert.equal(await backend.read(file), null, "nothing was written");
  accepted(await backend.append(request("x".repeat(255), 1, "longest name")));
  accepted(await backend.append(request("é".repeat(127) + "x", 1, "254 bytes, non-ASCII")));
  accepted(await backend.append(request("~%.name with spaces:and:colons", 1, "odd")));
  assert.equal(await readText(backend, "~%.name with spaces:and:colons"), "odd");
}

/**
 * Writers with shuffled tokens append concurrently (and resend their first request). Every
 * acknowledged append must be in the file exactly once at its offset, nothing refused may
 * be, and tokens along the file must never decrease.
 */
async function concurrentAppends(backend: FileBackend, file: string): Promise<void> {
  const writers = 12;
  const appendsPerWriter = 4;
  const recordBytes = 16;
  const encode = (token: number, writer: number, sequence: number) =>
    `${String(token).padStart(6, "0")}:${String(writer).padStart(3, "0")}:${
      String(sequence).padStart(4, "0")
    };`;
  const acknowledged = new Map<string, AppendResult>();
  const work = Array.from({ length: writers }, async (_, writer) => {
    const token = ((writer * 5) % writers) + 1;
    for (let sequence = 0; sequence < appendsPerWriter; sequence += 1) {
      const text = encode(token, writer, sequence);
      assert.equal(text.length, recordBytes);
      const requestId = `w${writer}-s${sequence}`;
      const sends = sequence === 0 ? 2 : 1; // the first one twice, concurrently
      const outcomes = await Promise.all(
        Array.from({ length: sends }, () => backend.append(request(file, token, text, requestId))),
      );
      for (const outcome of outcomes) {
        if (outcome.status === "ok") acknowledged.set(text, outcome.result);
      }
    }
  });
  await Promise.all(work);
  const content = (await readText(backend, file)) ?? "";
  assert.equal(content.length % recordBytes, 0);
  const records = content.match(/.{16}/g) ?? [];
  assert.equal(new Set(records).size, records.length, "no append is in the file twice");
  assert.deepEqual(new Set(records), new Set(acknowledged.keys()), "file = acknowledged appends");
  let previousToken = 0;
  records.forEach((record, index) => {
    const token = Number(record.slice(0, 6));
    assert.ok(token >= previousToken, `token ${token} after ${previousToken} at record ${index}`);
    previousToken = token;
    const result = acknowledged.get(record);
    assert.equal(result?.offset, index * recordBytes, "acknowledged offset matches the file");
  });
  assert.ok(records.length >= appendsPerWriter, "at least the first writer to arrive wins");
  assert.equal((await backend.meta(file))?.appends, records.length);
}

async function reopen(factory: BackendFactory): Promise<void> {
  const file = `${factory.prefix}-reopen`;
  const first = await factory.open();
  try {
    accepted(await first.append(request(file, 10, "persisted;", "p1")));
    accepted(await first.append(request(file, 11, "also;", "p2", "lock-b")));
  } finally {
    await first.close();
  }
  const second = await factory.open();
  try {
    assert.equal(await readText(second, file), "persisted;also;");
    assert.deepEqual(await second.meta(file), {
      highestToken: 11,
      lock: "lock-b",
      size: 15,
      appends: 2,
    });
    assert.deepEqual(accepted(await second.append(request(file, 10, "persisted;", "p1"))), {
      offset: 0,
      size: 10,
      token: 10,
      duplicate: true,
    });
    assert.equal((await second.append(request(file, 10, "stale;", "p3"))).status, "stale");
    assert.equal(accepted(await second.append(request(file, 12, "more;", "p4"))).offset, 15);
    assert.equal(await readText(second, file), "persisted;also;more;");
  } finally {
    await second.close();
  }
}

async function boundedDedupe(factory: BackendFactory): Promise<void> {
  const file = `${factory.prefix}-bounded`;
  const backend = await factory.open({ requestIdsPerFileMax: 3 });
  try {
    for (const id of ["b1", "b2", "b3", "b4"]) {
      accepted(await backend.append(request(file, 1, `${id};`, id)));
    }
    assert.equal(accepted(await backend.append(request(file, 1, "b4;", "b4"))).duplicate, true);
    assert.equal(accepted(await backend.append(request(file, 1, "b2;", "b2"))).duplicate, true);
    const forgotten = accepted(await backend.append(request(file, 1, "b1;", "b1")));
    assert.equal(forgotten.duplicate, false, "only the last N request ids are remembered");
    assert.equal(await readText(backend, file), "b1;b2;b3;b4;b1;");
  } finally {
    await backend.close();
  }
}

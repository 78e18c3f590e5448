import assert from "node:assert/strict";
import { join } from "node:path";
import { runBackendConformance } from "./backend_conformance.ts";
import { CorruptDataError, DataDirectoryBusyError, LogFileBackend } from "./file_backend.ts";
import { encodeRecord } from "./_log_record.ts";

const encoder = new TextEncoder();

function append(
  backend: LogFileBackend,
  file: string,
  token: number,
  text: string,
  requestId: string,
) {
  return backend.append({ file, lock: "L", token, requestId, data: encoder.encode(text) });
}

async function withDirectory(body: (directory: string) => Promise<void>): Promise<void> {
  const directory = await Deno.makeTempDir({ prefix: "dlock-filewriter-test-" });
  try {
    await body(directory);
  } finally {
    await Deno.remove(directory, { recursive: true });
  }
}

Deno.test("file backend conformance", async (t) => {
  await withDirectory(async (directory) => {
    await runBackendConformance(t, {
      prefix: "conformance",
      open: (options = {}) =>
        LogFileBackend.open({ directory: join(directory, "data"), ...options }),
    });
  });
});

Deno.test("file backend truncates a torn tail and keeps every acknowledged append", async () => {
  await withDirectory(async (directory) => {
    const backend = await LogFileBackend.open({ directory });
    await append(backend, "f", 1, "one;", "a");
    await append(backend, "f", 1, "two;", "b");
    await backend.close();
    const log = join(directory, "files", "f.log");
    const intact = await Deno.readFile(log);
    const torn = encodeRecord(
      { file: "f", lock: "L", token: 2, requestId: "c", offset: 8 },
      encoder.encode("three;"),
    );
    for (
      const tail of [torn.subarray(0, 7), torn.subarray(0, torn.length - 1), new Uint8Array(40)]
    ) {
      await Deno.writeFile(log, new Uint8Array([...intact, ...tail]));
      const warnings: string[] = [];
      const reopened = await LogFileBackend.open({ directory, onWarning: (w) => warnings.push(w) });
      try {
        assert.equal(warnings.length, 1, "the repair is reported");
        assert.deepEqual(await Deno.readFile(log), intact, "the torn bytes are cut off");
        assert.equal(new TextDecoder().decode((await reopened.read("f"))!), "one;two;");
        assert.equal((await append(reopened, "f", 1, "two;", "b")).status, "ok");
        assert.deepEqual(await reopened.meta("f"), {
          highestToken: 1,
          lock: "L",
          size: 8,
          appends: 2,
        });
      } finally {
        await reopened.close();
      }
    }
    const again = await LogFileBackend.open({ directory });
    const result = await append(again, "f", 2, "three;", "c");
    assert.deepEqual(result, {
      status: "ok",
      result: { offset: 8, size: 6, token: 2, duplicate: false },
    });
    await again.close();
  });
});

/** Writes a log of tokens 1 and 2 and returns its bytes and path (the backend is closed). */
async function writeTwoRecords(directory: string): Promise<{ log: string; intact: Uint8Array }> {
  const backend = await LogFileBackend.open({ directory });
  await append(backend, "f", 1, "one;", "a");
  await append(backend, "f", 2, "two;", "b");
  await backend.close();
  const log = join(directory, "files", "f.log");
  return { log, intact: await Deno.readFile(log) };
}

/** The third record a client may have been told was stored (token 3, `dataBytes` of 'x'). */
function thirdRecord(dataBytes: number): Uint8Array {
  return encodeRecord(
    { file: "f", lock: "L", token: 3, requestId: "c", offset: 8 },
    new Uint8Array(dataBytes).fill(0x78),
  );
}

Deno.test("file backend refuses a last record or tail a crash cannot leave, and changes nothing", async () => {
  await withDirectory(async (directory) => {
    const { log, intact } = await writeTwoRecords(directory);
    const position = intact.length;
    const overwritten = thirdRecord(100);
    overwritten.set(encoder.encode("XX"), 60); // the hand repro: 2 bytes of garbage in place
    const flippedBit = thirdRecord(10_000);
    flippedBit[5_000] = flippedBit[5_000]! ^ 0x01;
    const longerLength = thirdRecord(100); // a damaged length field, not a short write
    new DataView(longerLength.buffer).setUint32(8, 101, true);
    const cases: [string, Uint8Array, RegExp][] = [
      [
        "2 bytes overwritten",
        overwritten,
        new RegExp(
          `at byte ${position} \\(${overwritten.length} bytes\\), is complete but fails its checksum.* may have been acknowledged`,
        ),
      ],
      [
        "one bit flipped",
        flippedBit,
        new RegExp(
          `at byte ${position} \\(${flippedBit.length} bytes\\), is complete but fails its checksum`,
        ),
      ],
      ["a damaged length field", longerLength, /its length field is damaged/],
      ["short garbage", encoder.encode("garbage\n"), /neither the start of a record nor zeros/],
      ["long garbage", encoder.encode("g".repeat(300)), /unreadable record header .* not zeros/],
    ];
    for (const [name, tail, message] of cases) {
      const damaged = new Uint8Array([...intact, ...tail]);
      await Deno.writeFile(log, damaged);
      const warnings: string[] = [];
      const error = await LogFileBackend.open({ directory, onWarning: (w) => warnings.push(w) })
        .then(
          () => assert.fail(`${name}: the open must fail`),
          (error: unknown) => error,
        );
      assert.ok(error instanceof CorruptDataError, `${name}: ${error}`);
      assert.match(error.message, message, name);
      assert.ok(error.message.includes(log), `${name}: names the file`);
      assert.ok(
        error.message.includes(`truncate -s ${position} ${log}`),
        `${name}: gives the way out: ${error.message}`,
      );
      assert.deepEqual(warnings, [], `${name}: nothing is reported as repaired`);
      assert.deepEqual(await Deno.readFile(log), damaged, `${name}: the log is unchanged`);
    }
  });
});

Deno.test("file backend truncates a complete last record with zeroed blocks as torn (power loss)", async () => {
  await withDirectory(async (directory) => {
    const { log, intact } = await writeTwoRecords(directory);
    const position = intact.length;
    const blockBytes = 4096;
    const record = thirdRecord(3 * blockBytes);
    const zeroed = (from: number, to: number) => {
      const copy = record.slice();
      copy.fill(0, from, to);
      return copy;
    };
    // Record-relative start of the first whole 4096-byte block of the file inside the record.
    const firstBlock = Math.ceil(position / blockBytes) * blockBytes - position;
    const tails: [string, Uint8Array][] = [
      ["all zeros", new Uint8Array(record.length)],
      ["second half zeros", zeroed(record.length / 2, record.length)],
      ["one block zeros", zeroed(firstBlock, firstBlock + blockBytes)],
      [
        "the block part after the last boundary",
        zeroed(firstBlock + 2 * blockBytes, record.length),
      ],
      ["the block part holding the header", zeroed(0, firstBlock)],
    ];
    for (const [name, tail] of tails) {
      assert.equal(tail.length, record.length, `${name}: the record is complete`);
      await Deno.writeFile(log, new Uint8Array([...intact, ...tail]));
      const warnings: string[] = [];
      const reopened = await LogFileBackend.open({ directory, onWarning: (w) => warnings.push(w) });
      try {
        assert.equal(warnings.length, 1, `${name}: the repair is reported`);
        assert.match(
          warnings[0]!,
          new RegExp(`torn record at byte ${position} .*${record.length} bytes`),
        );
        assert.deepEqual(await Deno.readFile(log), intact, `${name}: only the torn record is cut`);
        assert.equal(new TextDecoder().decode((await reopened.read("f"))!), "one;two;");
        assert.deepEqual(await reopened.meta("f"), {
          highestToken: 2,
          lock: "L",
          size: 8,
          appends: 2,
        });
      } finally {
        await reopened.close();
      }
    }
  });
});

Deno.test("file backend refuses to open damaged data and changes nothing", async () => {
  await withDirectory(async (directory) => {
    const backend = await LogFileBackend.open({ directory });
    await append(backend, "f", 1, "first record;", "a");
    await append(backend, "f", 2, "second;", "b");
    await backend.close();
    const log = join(directory, "files", "f.log");
    const intact = await Deno.readFile(log);
    const flippedData = intact.slice();
    flippedData[30] = flippedData[30]! ^ 0xff; // inside the first record's meta
    const flippedMagic = intact.slice();
    flippedMagic[0] = 0;
    for (const damaged of [flippedData, flippedMagic]) {
      await Deno.writeFile(log, damaged);
      await assert.rejects(() => LogFileBackend.open({ directory }), CorruptDataError);
      assert.deepEqual(await Deno.readFile(log), damaged, "a corrupt log is never reset");
    }
    await Deno.writeFile(log, intact);
    await Deno.writeTextFile(join(directory, "FORMAT"), "{}");
    await assert.rejects(() => LogFileBackend.open({ directory }), CorruptDataError);
    await Deno.writeTextFile(
      join(directory, "FORMAT"),
      '{"format":"dlock-filewriter-log","version":1}',
    );
    await Deno.writeTextFile(join(directory, "files", "stray.txt"), "?");
    await assert.rejects(() => LogFileBackend.open({ directory }), CorruptDataError);
    await Deno.remove(join(directory, "files", "stray.txt"));
    await Deno.rename(log, join(directory, "files", "g.log"));
    await assert.rejects(() => LogFileBackend.open({ directory }), /holds records of file "f"/);
  });
});

Deno.test("file backend refuses a non-empty directory without FORMAT", async () => {
  await withDirectory(async (directory) => {
    await Deno.writeTextFile(join(directory, "precious.txt"), "not ours");
    await assert.rejects(() => LogFileBackend.open({ directory }), CorruptDataError);
    assert.equal(await Deno.readTextFile(join(directory, "precious.txt")), "not ours");
  });
});

Deno.test("file backend refuses a directory another filewriter holds", async () => {
  await withDirectory(async (directory) => {
    const first = await LogFileBackend.open({ directory });
    try {
      const child = new Deno.Command(Deno.execPath(), {
        args: [
          "eval",
          `import { LogFileBackend } from ${
            JSON.stringify(new URL("./file_backend.ts", import.meta.url).href)
          };
           try { await LogFileBackend.open({ directory: ${
            JSON.stringify(directory)
          } }); Deno.exit(0); }
           catch (error) { console.error(error.name); Deno.exit(3); }`,
        ],
        stdout: "null",
        stderr: "piped",
      });
      const { code, stderr } = await child.output();
      assert.equal(code, 3);
      assert.match(new TextDecoder().decode(stderr), /DataDirectoryBusyError/);
      assert.ok(DataDirectoryBusyError.name === "DataDirectoryBusyError");
    } finally {
      await first.close();
    }
  });
});

Deno.test("file backend keeps every log inside the data directory", async () => {
  await withDirectory(async (directory) => {
    const backend = await LogFileBackend.open({ directory: join(directory, "data") });
    const names = [
      ".hidden",
      "spaces and :colons",
      "~tilde%percent",
      "ü".repeat(120),
      "x".repeat(255),
    ];
    for (const name of names) await append(backend, name, 1, name, "r");
    await backend.close();
    const outside = [...Deno.readDirSync(directory)].map((entry) => entry.name);
    assert.deepEqual(outside, ["data"]);
    const logs = [...Deno.readDirSync(join(directory, "data", "files"))].map((entry) => entry.name);
    assert.equal(logs.length, names.length);
    for (const log of logs) {
      assert.match(log, /^(?:[A-Za-z0-9_%-][A-Za-z0-9_.%-]*|~[0-9a-f]{64})\.log$/);
    }
    const reopened = await LogFileBackend.open({ directory: join(directory, "data") });
    for (const name of names) {
      assert.equal(new TextDecoder().decode((await reopened.read(name))!), name);
    }
    await reopened.close();
  });
});

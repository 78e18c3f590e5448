import assert from "node:assert/strict";
import { InvalidArgumentError } from "../errors.ts";
import { limits } from "../limits.ts";
import {
  decodeCommand,
  encodeCommand,
  type LockCommand,
  LockStateMachine,
  validateCommand,
} from "./mod.ts";

const examples: LockCommand[] = [
  { type: "openSession", nowMs: 1_700_000_000_000, clientName: "alice", ttlMs: 0, openKey: "uuid" },
  { type: "openSession", nowMs: 0, clientName: "ünïcødé 😀", ttlMs: 300_000, openKey: "" },
  { type: "closeSession", nowMs: 5, sessionId: 12, requestId: 99 },
  {
    type: "acquire",
    nowMs: 1_700_000_000_123,
    sessionId: 3,
    lock: "orders/42",
    requestId: 7,
    wait: true,
  },
  { type: "acquire", nowMs: 0, sessionId: 2 ** 53 - 1, lock: "é", requestId: 1, wait: false },
  { type: "release", nowMs: 9, sessionId: 3, lock: "x", requestId: 8 },
  { type: "release", nowMs: 9, sessionId: 3, lock: "x", requestId: 8, token: 123_456_789 },
  { type: "cancelWait", nowMs: 9, sessionId: 3, lock: "x".repeat(256), requestId: 7 },
  { type: "expireSession", nowMs: 10, sessionId: 3 },
];

Deno.test("command codec: every command round-trips", () => {
  for (const command of examples) {
    const decoded = decodeCommand(encodeCommand(command));
    assert.deepEqual(decoded, { ok: true, command });
  }
});

Deno.test("command codec: compact (a typical acquire is about 20 bytes)", () => {
  const acquire = encodeCommand(examples[3] as LockCommand);
  assert.ok(acquire.length <= 24, `acquire is ${acquire.length} bytes`);
  const json = new TextEncoder().encode(JSON.stringify(examples[3]));
  assert.ok(acquire.length * 3 < json.length);
});

Deno.test("command codec: encode refuses what it cannot represent", () => {
  const bad: unknown[] = [
    { type: "acquire", nowMs: -1, sessionId: 1, lock: "x", requestId: 1, wait: true },
    { type: "acquire", nowMs: 0, sessionId: 2 ** 53, lock: "x", requestId: 1, wait: true },
    { type: "acquire", nowMs: 0, sessionId: 1.5, lock: "x", requestId: 1, wait: true },
    { type: "acquire", nowMs: 0, sessionId: 1, lock: 5, requestId: 1, wait: true },
    { type: "acquire", nowMs: 0, sessionId: 1, lock: "x\ud800", requestId: 1, wait: true },
    { type: "release", nowMs: 0, sessionId: 1, lock: "x", requestId: 1, token: -3 },
    { type: "nope", nowMs: 0 },
    {
      type: "acquire",
      nowMs: 0,
      sessionId: 1,
      lock: "x".repeat(limits.commandBytesMax),
      requestId: 1,
      wait: true,
    },
  ];
  for (const command of bad) {
    assert.throws(() => encodeCommand(command as LockCommand), InvalidArgumentError);
  }
});

Deno.test("validateCommand: stateless checks for the leader before proposing", () => {
  assert.equal(validateCommand(examples[3]), null);
  assert.match(
    validateCommand({ ...examples[3], lock: "" }) ?? "",
    /empty/,
  );
  assert.match(validateCommand({ ...examples[0], ttlMs: 50 }) ?? "", /TTL/);
  assert.match(validateCommand({ ...examples[2], requestId: 0 }) ?? "", /requestId/);
  assert.match(validateCommand("text") ?? "", /not an object/);
});

Deno.test("command codec: random and mutated bytes never throw, and apply deterministically", () => {
  let seed = 12345;
  const random = () => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed / 2 ** 32;
  };
  const a = new LockStateMachine();
  const b = new LockStateMachine();
  let index = 0;
  for (const command of examples.slice(0, 2)) {
    index++;
    a.applyEncoded(index, encodeCommand(command));
    b.applyEncoded(index, encodeCommand(command));
  }
  let decodedCount = 0;
  for (let i = 0; i < 20_000; i++) {
    let data: Uint8Array;
    if (i % 2 === 0) {
      data = new Uint8Array(Math.floor(random() * 24));
      for (let j = 0; j < data.length; j++) data[j] = Math.floor(random() * 256);
      if (data.length > 0 && random() < 0.7) data[0] = 1; // valid version more often
    } else {
      const source = encodeCommand(examples[i % examples.length] as LockCommand);
      data = source.slice(0, Math.max(0, source.length - Math.floor(random() * 3)));
      if (data.length > 0) data[Math.floor(random() * data.length)] = Math.floor(random() * 256);
    }
    const decoded = decodeCommand(data);
    if (decoded.ok) {
      decodedCount++;
      // Whatever decodes re-encodes to something that decodes to the same command.
      assert.deepEqual(decodeCommand(encodeCommand(decoded.command)), decoded);
    }
    index++;
    const outA = a.applyEncoded(index, data);
    const outB = b.applyEncoded(index, data);
    assert.deepEqual(outA, outB);
  }
  assert.ok(decodedCount > 100, `only ${decodedCount} inputs decoded`);
  assert.equal(a.stateHash(), b.stateHash());
});

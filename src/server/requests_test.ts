import assert from "node:assert/strict";
import { InvalidArgumentError } from "../errors.ts";
import {
  parseAcquire,
  parseAppend,
  parseCloseSession,
  parseKeepAlive,
  parseOpenSession,
  parseRelease,
  parseStatus,
} from "./requests.ts";
import * as grpc from "@grpc/grpc-js";
import { statusCodeByReason, toErrorMessage, toServiceError } from "./grpc_errors.ts";
import { DownstreamUnavailableError, NotLeaderError } from "../errors.ts";
import { clusterIdOf } from "./cluster_id.ts";

Deno.test("requests: valid requests parse, defaults resolve", () => {
  assert.deepEqual(
    parseAcquire({ sessionId: 3, lock: "a", requestId: 1, wait: false, timeoutMs: 50 }),
    {
      sessionId: 3,
      lock: "a",
      requestId: 1,
      wait: false,
      timeoutMs: 0,
    },
  );
  const opened = parseOpenSession({ clientName: "", ttlMs: 0, openKey: "" }, 7_000);
  assert.equal(opened.ttlMs, 7_000);
  assert.ok(opened.openKey.length > 0, "an empty open key becomes a random one");
  assert.equal(parseStatus({ locksLimit: 0 }).locksLimit, 1000);
  assert.equal(parseStatus({ locksLimit: 10, summaryOnly: true }).locksLimit, 0);
  assert.equal(parseRelease({ sessionId: 1, lock: "é", requestId: 2, token: 0 }).token, 0);
  assert.equal(parseKeepAlive({ sessionId: 9 }).sessionId, 9);
  assert.equal(parseCloseSession({ sessionId: 9, requestId: 4 }).requestId, 4);
});

Deno.test("requests: every bad field is an InvalidArgumentError naming it", () => {
  const bad: [() => unknown, RegExp][] = [
    [() => parseAcquire(null), /empty/],
    [() => parseAcquire({ sessionId: 0, lock: "a", requestId: 1 }), /session_id/],
    [() => parseAcquire({ sessionId: 2 ** 53, lock: "a", requestId: 1 }), /session_id/],
    [() => parseAcquire({ sessionId: 1, lock: "", requestId: 1 }), /empty/],
    [() => parseAcquire({ sessionId: 1, lock: "x".repeat(257), requestId: 1 }), /longer than 256/],
    [() => parseAcquire({ sessionId: 1, lock: "a\u0007", requestId: 1 }), /control character/],
    [() => parseAcquire({ sessionId: 1, lock: "a", requestId: -1 }), /request_id/],
    [() => parseRelease({ sessionId: 1, lock: "a", requestId: 1, token: 1.5 }), /token/],
    [() => parseOpenSession({ clientName: "a", ttlMs: 999, openKey: "k" }), /TTL/],
    [() => parseOpenSession({ clientName: "\n", ttlMs: 0, openKey: "k" }), /control character/],
    [
      () =>
        parseAppend({
          sessionId: 1,
          lock: "a",
          token: 1,
          file: "a/b",
          data: new Uint8Array(),
          requestId: "r",
        }),
      /separator/,
    ],
    [
      () =>
        parseAppend({ sessionId: 1, lock: "a", token: 1, file: "f", data: "text", requestId: "r" }),
      /bytes/,
    ],
    [
      () =>
        parseAppend({
          sessionId: 1,
          lock: "a",
          token: 0,
          file: "f",
          data: new Uint8Array(),
          requestId: "r",
        }),
      /token/,
    ],
    [
      () =>
        parseAppend({
          sessionId: 1,
          lock: "a",
          token: 1,
          file: "f",
          data: new Uint8Array(),
          requestId: "",
        }),
      /request_id/,
    ],
  ];
  for (const [parse, message] of bad) {
    assert.throws(
      parse,
      (error: unknown) => error instanceof InvalidArgumentError && message.test(error.message),
    );
  }
});

Deno.test("grpc errors: one mapping, metadata and in-band forms agree", () => {
  const error = new NotLeaderError("10.0.0.1:5000");
  const unary = toServiceError(error, new grpc.Metadata());
  assert.equal(unary.code, statusCodeByReason.NOT_LEADER);
  assert.equal(unary.metadata?.get("dlock-reason")[0], "NOT_LEADER");
  assert.equal(unary.metadata?.get("dlock-leader")[0], "10.0.0.1:5000");
  assert.deepEqual(toErrorMessage(error), {
    reason: "NOT_LEADER",
    message: error.message,
    leader: "10.0.0.1:5000",
  });
  const downstream = {
    service: "filewriter",
    address: "localhost:8080",
    attempts: 3,
    unreachable: true,
    problem: "fetch failed",
  };
  const down = new DownstreamUnavailableError("Cannot append to f", downstream);
  assert.deepEqual(toErrorMessage(down), {
    reason: "UNAVAILABLE",
    message: "Cannot append to f",
    leader: "",
    downstream,
  });
  assert.equal(statusCodeByReason.STALE_FENCE, 9);
  assert.equal(statusCodeByReason.INVALID_ARGUMENT, 3);
});

Deno.test("cluster id: same members in any order give the same id; others differ", () => {
  assert.equal(clusterIdOf(["b:1", "a:1", "c:1"]), clusterIdOf(["c:1", "b:1", "a:1", "a:1"]));
  assert.notEqual(clusterIdOf(["a:1", "b:1", "c:1"]), clusterIdOf(["a:1", "b:1", "d:1"]));
  assert.match(clusterIdOf(["a:1"]), /^dlock-[0-9a-f]{16}$/);
});

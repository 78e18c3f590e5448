import assert from "node:assert/strict";
import {
  checkClientName,
  defaultServers,
  looksLikeServers,
  resolveServers,
  secondsToMs,
  UsageError,
} from "./_client_args.ts";

function withServersVariable(value: string | undefined, fn: () => void): void {
  const saved = Deno.env.get("DLOCK_SERVERS");
  if (value === undefined) Deno.env.delete("DLOCK_SERVERS");
  else Deno.env.set("DLOCK_SERVERS", value);
  try {
    fn();
  } finally {
    if (saved === undefined) Deno.env.delete("DLOCK_SERVERS");
    else Deno.env.set("DLOCK_SERVERS", saved);
  }
}

Deno.test("resolveServers: --servers, else SERVER, else DLOCK_SERVERS, else the default", () => {
  withServersVariable("127.0.0.1:7000", () => {
    assert.deepEqual(resolveServers("a:1, b:2,", undefined), ["a:1", "b:2"]);
    assert.deepEqual(resolveServers(undefined, "c:3"), ["c:3"]);
    assert.deepEqual(resolveServers(undefined, undefined), ["127.0.0.1:7000"]);
  });
  withServersVariable(undefined, () => {
    assert.deepEqual(resolveServers(undefined, undefined), defaultServers.split(","));
  });
});

Deno.test("resolveServers: every address is checked, and the servers are given once", () => {
  assert.throws(
    () => resolveServers(undefined, "127.0.0.1"),
    /^UsageError: Cannot use 127\.0\.0\.1 as a server address as it has no port: expected HOST:PORT$/,
  );
  assert.throws(() => resolveServers("a:1,b:99999", undefined), /b:99999 .* out of range/);
  assert.throws(() => resolveServers(",", undefined), /Cannot use "," as the servers/);
  assert.throws(() => resolveServers("a:1", "b:2"), /both --servers and a positional SERVER/);
  withServersVariable("127.0.0.1", () => {
    assert.throws(
      () => resolveServers(undefined, undefined),
      /127\.0\.0\.1 as a server address in DLOCK_SERVERS as it has no port/,
    );
  });
});

Deno.test("looksLikeServers: what a positional meant as an address looks like", () => {
  for (const text of ["127.0.0.1", "127.0.0.1:5000", "a:1,b:2", "localhost", "[::1]", "x:"]) {
    assert.equal(looksLikeServers(text), true, text);
  }
  for (const text of ["alice", "worker-1", "batch.1", "1.2.3"]) {
    assert.equal(looksLikeServers(text), false, text);
  }
});

Deno.test("secondsToMs: a positive number of seconds, in whole milliseconds", () => {
  assert.equal(secondsToMs("0.5", "--timeout"), 500);
  assert.equal(secondsToMs("10", "--timeout"), 10_000);
  assert.equal(secondsToMs("0.001", "--timeout"), 1);
  assert.equal(secondsToMs("2000000", "--timeout"), 2_000_000_000);
  for (const text of ["0", "-1", "0.0001", "", " ", "abc", "Infinity", "1e10", "2000000.001"]) {
    assert.throws(
      () => secondsToMs(text, "--timeout"),
      (error: unknown) =>
        error instanceof UsageError &&
        error.message.startsWith("Cannot use --timeout as it must be a number of seconds > 0"),
      JSON.stringify(text),
    );
  }
});

Deno.test("checkClientName refuses an empty or blank name", () => {
  assert.equal(checkClientName("alice"), "alice");
  assert.equal(checkClientName(" bob "), " bob ");
  for (const name of ["", " ", "\t"]) {
    assert.throws(() => checkClientName(name), /as the client name as it is empty or blank/);
  }
});

import assert from "node:assert/strict";
import { parseClientArgs, type Settings } from "./client.ts";

function parse(args: string[]): Settings {
  const parsed = parseClientArgs(args);
  assert.notEqual(typeof parsed, "number");
  return parsed as Settings;
}

Deno.test("dlock client args: [SERVER] [client-name] in the original forms", () => {
  assert.deepEqual(parse(["127.0.0.1:5000", "alice"]), {
    servers: ["127.0.0.1:5000"],
    name: "alice",
    ttlMs: 0,
  });
  assert.deepEqual(parse(["127.0.0.1:5000"]).servers, ["127.0.0.1:5000"]);
  assert.match(parse(["127.0.0.1:5000"]).name, /^client-\d+$/);
  assert.equal(parse(["--servers", "127.0.0.1:5000", "bob"]).name, "bob");
  assert.equal(parse(["--name", "carol", "127.0.0.1:5000"]).name, "carol");
  assert.equal(parse(["dave", "--ttl", "2.5"]).ttlMs, 2_500);
  assert.equal(parse(["--ttl", "1"]).ttlMs, 1_000);
  assert.equal(parse(["--ttl", "300"]).ttlMs, 300_000);
});

Deno.test("dlock client args: mistakes are usage errors", () => {
  const bad: [string[], RegExp][] = [
    [
      ["127.0.0.1", "alice"],
      /UsageError: Cannot use 127\.0\.0\.1 as a server address as it has no port/,
    ],
    [["127.0.0.1"], /127\.0\.0\.1 as a server address as it has no port/],
    [["127.0.0.1:99999"], /port is out of range: expected a port from 1 to 65535/],
    [["127.0.0.1:99999", "alice"], /port is out of range/],
    [["alice", "bob"], /UsageError: Cannot use alice as a server address as it has no port/],
    [["a:1", "b", "c"], /unexpected arguments: c/],
    [["--name", ""], /"" as the client name as it is empty or blank/],
    [["127.0.0.1:5000", "  "], /" {2}" as the client name as it is empty or blank/],
    [["--name", "x", "y"], /give the client name once/],
    [["--servers", "a:1", "b:2", "c"], /both --servers and a positional SERVER/],
    [["--ttl", "0"], /Cannot use --ttl as it must be 1\.\.300 seconds: received "0"/],
    [["--ttl", "0.5"], /--ttl as it must be 1\.\.300 seconds: received "0\.5"/],
    [["--ttl", "500"], /--ttl as it must be 1\.\.300 seconds: received "500"/],
    [["--ttl", "300.001"], /1\.\.300 seconds/],
    [["--ttl", "ten"], /1\.\.300 seconds: received "ten"/],
    [["--ttl", ""], /1\.\.300 seconds: received ""/],
  ];
  for (const [args, message] of bad) {
    assert.throws(() => parseClientArgs(args), message, JSON.stringify(args));
  }
});

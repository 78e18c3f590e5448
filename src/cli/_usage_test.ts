import assert from "node:assert/strict";
import { checkServerAddress, UsageError } from "./_usage.ts";

Deno.test("checkServerAddress accepts HOST:PORT with a port from 1 to 65535", () => {
  for (const address of ["127.0.0.1:5000", "localhost:8080", "db-1.example.com:1", "[::1]:65535"]) {
    assert.equal(checkServerAddress(address, "a server address"), address);
  }
});

Deno.test("checkServerAddress says what is wrong with an address", () => {
  const cases: [string, string][] = [
    ["127.0.0.1", "Cannot use 127.0.0.1 as a server address as it has no port: expected HOST:PORT"],
    [
      "127.0.0.1:",
      "Cannot use 127.0.0.1: as a server address as it has no port: expected HOST:PORT",
    ],
    ["[::1]", "Cannot use [::1] as a server address as it has no port: expected HOST:PORT"],
    [
      "127.0.0.1:99999",
      "Cannot use 127.0.0.1:99999 as a server address as its port is out of range: expected a port from 1 to 65535",
    ],
    [
      "127.0.0.1:0",
      "Cannot use 127.0.0.1:0 as a server address as its port is out of range: expected a port from 1 to 65535",
    ],
    ["host:port", "Cannot use host:port as a server address: expected HOST:PORT"],
    ["::1:5000", "Cannot use ::1:5000 as a server address: expected HOST:PORT"],
    ["", 'Cannot use "" as a server address: expected HOST:PORT'],
    ["a b:1", 'Cannot use "a b:1" as a server address: expected HOST:PORT'],
  ];
  for (const [address, message] of cases) {
    assert.throws(
      () => checkServerAddress(address, "a server address"),
      (error: unknown) => error instanceof UsageError && error.message === message,
      address,
    );
  }
});

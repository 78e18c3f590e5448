import assert from "node:assert/strict";
import { sessionTtlMsFloor } from "../limits.ts";
import { parseServerArgs } from "./server.ts";

Deno.test("dlock server args: the original positional form", () => {
  const parsed = parseServerArgs([
    "127.0.0.1:5000",
    "127.0.0.1:5001",
    "127.0.0.1:5002",
    "localhost:8080",
  ]);
  assert.equal(parsed.self, "127.0.0.1:5000");
  assert.deepEqual(parsed.members, ["127.0.0.1:5000", "127.0.0.1:5001", "127.0.0.1:5002"]);
  assert.equal(parsed.filewriter, "localhost:8080");
  assert.equal(parsed.dataDir, "./data/127.0.0.1_5000/");
  assert.equal(parsed.heartbeatMs, 50);
  assert.equal(parsed.electionMs, 300);
});

Deno.test("dlock server args: flags, peers with or without self", () => {
  const parsed = parseServerArgs([
    "--listen",
    "127.0.0.1:5001",
    "--peers",
    "127.0.0.1:5000,127.0.0.1:5001,127.0.0.1:5002",
    "--filewriter",
    "fw:9",
    "--data-dir",
    "/d",
    "--session-ttl",
    "20",
    "--heartbeat-ms",
    "20",
    "--election-ms",
    "200",
    "--log-format",
    "json",
    "--log-level",
    "debug",
  ]);
  assert.deepEqual(parsed.members, ["127.0.0.1:5001", "127.0.0.1:5000", "127.0.0.1:5002"]);
  assert.equal(parsed.filewriter, "fw:9");
  assert.equal(parsed.dataDir, "/d");
  assert.equal(parsed.sessionTtlMs, 20_000);
  assert.equal(parsed.logFormat, "json");
  const others = parseServerArgs([
    "--listen",
    "127.0.0.1:5001",
    "--peers",
    "127.0.0.1:5000,127.0.0.1:5002",
  ]);
  assert.deepEqual(others.members, parsed.members);
});

Deno.test("dlock server args: mistakes are explained", () => {
  const bad: [string[], RegExp][] = [
    [["127.0.0.1:5000"], /SELF and FILEWRITER/],
    [["nonsense", "fw:1"], /nonsense as SELF as it has no port: expected HOST:PORT/],
    [["127.0.0.1:5000", "localhost"], /localhost as FILEWRITER as it has no port/],
    [["127.0.0.1:0", "fw:1"], /127\.0\.0\.1:0 as SELF as its port is out of range/],
    [["a:1", "b:99999", "c:3", "fw:1"], /b:99999 as a peer as its port is out of range/],
    [["--listen", "a:1", "--filewriter", "fw"], /fw as --filewriter as it has no port/],
    [["127.0.0.1:5000", "127.0.0.1:5001", "fw:1"], /odd number/],
    [["--listen", "a:1", "--log-format", "xml"], /text or json/],
    [["--listen", "a:1", "--election-ms", "50", "--heartbeat-ms", "50"], /twice/],
    [["--listen", "a:1", "--session-ttl", "0.5"], /session-ttl/],
    [["--listen", "a:1", "--session-ttl", "301"], /1\.\.300 seconds/],
    [["--listen", "a:1", "--bogus"], /bogus/],
    [
      ["--listen", "127.0.0.1:19201", "--peers", "127.0.0.1:19202,127.0.0.1:19203"].concat(
        "--peer-port-offset",
        "1",
      ),
      /peer port of 127\.0\.0\.1:19201 would be 19202, which is also the client port of 127\.0\.0\.1:19202/,
    ],
    [
      ["--listen", "localhost:19201", "--peers", "127.0.0.1:19203,h:3"].concat(
        "--peer-port-offset",
        "2",
      ),
      /peer port of localhost:19201 would be 19203, which is also the client port of 127\.0\.0\.1:19203/,
    ],
    [
      ["--listen", "a:60000", "--peer-port-offset", "60000"],
      /peer port of a:60000 would be 0, out of range/,
    ],
    [
      ["--listen", "a:1", "--session-ttl", "1", "--election-ms", "2000"],
      /--session-ttl of 1 s as a failover with --election-ms 2000 .*use --session-ttl 11 or more/,
    ],
    [["--listen", "a:1", "--session-ttl", "1"], /use --session-ttl 2 or more/],
    [["--listen", "a:1", "--election-ms", "3000"], /the default --session-ttl of 10 s/],
  ];
  for (const [args, message] of bad) assert.throws(() => parseServerArgs(args), message);
});

Deno.test("dlock server args: the session TTL must outlast a failover", () => {
  // 4/3 x (2 x the longest election timeout + a heartbeat), clamped to the TTL limits.
  assert.equal(sessionTtlMsFloor({ electionMs: 300, heartbeatMs: 50 }), 1_667);
  assert.equal(sessionTtlMsFloor({ electionMs: 2_000, heartbeatMs: 50 }), 10_734);
  assert.equal(sessionTtlMsFloor({ electionMs: 100, heartbeatMs: 10 }), 1_000);
  assert.equal(sessionTtlMsFloor({ electionMs: 100_000, heartbeatMs: 10 }), 300_000);
  const listen = ["--listen", "a:1"];
  assert.equal(parseServerArgs([...listen, "--session-ttl", "2"]).sessionTtlMs, 2_000);
  assert.equal(
    parseServerArgs([...listen, "--election-ms", "2000", "--session-ttl", "11"]).sessionTtlMs,
    11_000,
  );
  assert.equal(parseServerArgs([...listen, "--election-ms", "1500"]).sessionTtlMs, null);
});

Deno.test("dlock server args: peer ports apart from member ports are accepted", () => {
  const members = ["--listen", "127.0.0.1:19201", "--peers", "127.0.0.1:19202,127.0.0.1:19203"];
  assert.equal(parseServerArgs([...members, "--peer-port-offset", "3"]).peerPortOffset, 3);
  assert.equal(parseServerArgs([...members, "--peer-port-offset", "100"]).peerPortOffset, 100);
  // Other hosts may reuse a port number; gRPC peers use no peer port at all.
  const spread = ["--listen", "a:19201", "--peers", "b:19202,c:19203", "--peer-port-offset", "1"];
  assert.equal(parseServerArgs(spread).peerPortOffset, 1);
  assert.equal(
    parseServerArgs([...members, "--peer-port-offset", "1", "--peer-transport", "grpc"])
      .peerPortOffset,
    1,
  );
});

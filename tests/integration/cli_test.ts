/**
 * The client-side commands as a user runs them: `dlock client` driven through a pipe,
 * `dlock lock`, `dlock status`, and `dlock cluster up|status|down`.
 */
import assert from "node:assert/strict";
import { connect, fetchStatus } from "../../src/client/mod.ts";
import { FilewriterClient } from "../../src/filewriter/mod.ts";
import { freeServerPorts } from "../../src/transport/tcp.ts";
import {
  dlockCommand,
  eventually,
  LoggedProcess,
  runDlock,
  sleep,
  startCluster,
  withTimeout,
} from "./_harness.ts";

const processTest = { sanitizeOps: false, sanitizeResources: false };

Deno.test({
  name: "dlock client, lock and status against a running cluster",
  ...processTest,
  async fn(t) {
    const cluster = await startCluster();
    const servers = cluster.addresses.join(",");
    const files = new FilewriterClient(cluster.filewriterAddress);
    try {
      await t.step(
        "the REPL runs a script from a pipe: acquire, write, release, exit",
        async () => {
          const script = "acquire\nwrite notes hello from the repl\nrelease\nexit\n";
          // The original form: a positional SERVER (a follower works too) and a client name.
          const result = await runDlock(["client", cluster.addresses[1] as string, "alice"], {
            stdin: script,
          });
          assert.equal(result.code, 0, result.stdout + result.stderr);
          assert.match(result.stdout, /connected as alice: session \d+/);
          assert.match(result.stdout, /acquired default \(token \d+\)/);
          assert.match(result.stdout, /wrote 20 bytes to notes at offset 0/);
          assert.match(result.stdout, /released default/);
          assert.match(result.stdout, /closed session \d+/);
          assert.equal(
            new TextDecoder().decode((await files.read("notes")) ?? new Uint8Array()),
            "hello from the repl\n",
          );
        },
      );

      await t.step("REPL errors are one clear line each and the REPL keeps going", async () => {
        const script = [
          "write notes without a lock",
          "write notes",
          "frobnicate",
          "release nothing-held",
          "acquire bad\u0001name",
          "acquire second",
          "write notes after the errors",
          "",
        ].join("\n");
        // No exit command: end of input closes the session (releasing "second").
        const result = await runDlock(["client", "--servers", servers, "bob"], { stdin: script });
        assert.equal(result.code, 1, "a script with failed commands exits 1");
        const errors = result.stdout.split("\n").filter((line) => line.startsWith("error: "));
        assert.equal(errors.length, 5, result.stdout);
        assert.match(errors[0] ?? "", /no lock held: run 'acquire \[lock\]' first/);
        assert.match(errors[1] ?? "", /usage: write <file> <data>/);
        assert.match(errors[2] ?? "", /unknown command 'frobnicate'/);
        assert.match(errors[3] ?? "", /not holding nothing-held/);
        assert.match(errors[4] ?? "", /INVALID_ARGUMENT/);
        assert.match(result.stdout, /acquired second \(token \d+\)/);
        assert.match(result.stdout, /closed session \d+, released second/);
        const status = await fetchStatus(cluster.addresses);
        assert.equal(
          status.locks.find((lock) => lock.name === "second"),
          undefined,
          "released at EOF",
        );
      });

      await t.step(
        "REPL: extra arguments print the usage; write keeps the data's own blanks",
        async () => {
          const script = [
            "acquire arity/odd name",
            "acquire arity",
            "write blanks   hello   world  ",
            "write blanks\tsecond  line",
            "release arity extra",
            "status now",
            "exit now",
            "help me",
            "",
          ].join("\n");
          const result = await runDlock(["client", "--servers", servers, "erin"], {
            stdin: script,
          });
          assert.equal(result.code, 1, result.stdout + result.stderr);
          const errors = result.stdout.split("\n").filter((line) => line.startsWith("error: "));
          assert.deepEqual(errors, [
            "error: usage: acquire [lock]",
            "error: usage: release [lock]",
            "error: usage: status",
            "error: usage: exit",
            "error: usage: help",
          ]);
          assert.doesNotMatch(result.stdout, /acquired arity\/odd/);
          assert.match(result.stdout, /wrote 14 bytes to blanks/);
          // "exit now" did not exit: end of input closed the session, releasing arity.
          assert.match(result.stdout, /closed session \d+, released arity/);
          assert.equal(
            new TextDecoder().decode((await files.read("blanks")) ?? new Uint8Array()),
            "hello   world\nsecond  line\n",
          );
          const status = await fetchStatus(cluster.addresses);
          assert.equal(status.locks.find((lock) => lock.name.startsWith("arity")), undefined);
        },
      );

      await t.step(
        "REPL: SIGTERM and SIGHUP cancel the wait, close the session, exit 128+N",
        async () => {
          const holder = await connect(cluster.addresses, { name: "sig-holder", ttlMs: 10_000 });
          try {
            await holder.acquire("sig");
            for (const [signal, code] of [["SIGTERM", 143], ["SIGHUP", 129]] as const) {
              const name = `waiter-${signal}`;
              const repl = new LoggedProcess(
                [...dlockCommand(), "client", "--servers", servers, name],
                `${cluster.dir}/repl-${signal}.log`,
                { stdin: "piped" },
              );
              const writer = repl.child.stdin.getWriter();
              try {
                // Two commands: the second must not run (nor open a new session) after the signal.
                await writer.write(new TextEncoder().encode("acquire sig\nacquire other\n"));
                await eventually(
                  async () => {
                    const status = await fetchStatus(cluster.addresses);
                    const lock = status.locks.find((lock) => lock.name === "sig");
                    return lock?.waiters.some((waiter) => waiter.clientName === name)
                      ? true
                      : undefined;
                  },
                  20_000,
                  `${name} waiting for sig`,
                );
                repl.signal(signal);
                const exited = await withTimeout(
                  repl.exited,
                  10_000,
                  `the REPL's exit on ${signal}`,
                );
                const log = await repl.log();
                assert.equal(exited.code, code, log);
                assert.match(log, /closed session \d+/);
                assert.doesNotMatch(log, /acquired other/);
                const status = await fetchStatus(cluster.addresses);
                assert.equal(
                  status.sessions.find((session) => session.clientName === name),
                  undefined,
                  `${name}'s session closed at once, not left to expire`,
                );
                assert.deepEqual(status.locks.find((lock) => lock.name === "sig")?.waiters, []);
              } finally {
                await writer.close().catch(() => {});
                await repl.kill().catch(() => {});
              }
            }
          } finally {
            await holder.close();
          }
        },
      );

      await t.step(
        "REPL: SIGTERM releases held locks, and gives up closing after 5 s",
        async () => {
          const start = (name: string) =>
            new LoggedProcess(
              [...dlockCommand(), "client", "--servers", servers, name],
              `${cluster.dir}/repl-${name}.log`,
              { stdin: "piped" },
            );
          const holding = async (repl: LoggedProcess, lock: string) => {
            await repl.child.stdin.getWriter().write(new TextEncoder().encode(`acquire ${lock}\n`));
            await eventually(
              async () => new RegExp(`acquired ${lock}`).test(await repl.log()) ? true : undefined,
              20_000,
              `the REPL holding ${lock}`,
            );
          };
          const term = start("term-holder");
          try {
            await holding(term, "held-at-term");
            term.signal("SIGTERM");
            const exited = await withTimeout(term.exited, 10_000, "the REPL's exit on SIGTERM");
            assert.equal(exited.code, 143, await term.log());
            assert.match(await term.log(), /closed session \d+, released held-at-term/);
            const status = await fetchStatus(cluster.addresses);
            assert.equal(status.locks.find((lock) => lock.name === "held-at-term"), undefined);
          } finally {
            await term.kill().catch(() => {});
          }
          // A cluster that does not answer: the process still exits, about 5 s after SIGTERM.
          const stuck = start("stuck-holder");
          try {
            await holding(stuck, "held-while-frozen");
            for (const server of cluster.servers) server?.signal("SIGSTOP");
            const started = performance.now();
            stuck.signal("SIGTERM");
            const exited = await withTimeout(
              stuck.exited,
              15_000,
              "the REPL's exit, cluster frozen",
            );
            const elapsedMs = performance.now() - started;
            assert.equal(exited.code, 143, await stuck.log());
            assert.match(await stuck.log(), /cannot close the session within 5 s/);
            assert.ok(elapsedMs >= 4_500 && elapsedMs < 12_000, `exited after ${elapsedMs} ms`);
          } finally {
            for (const server of cluster.servers) server?.signal("SIGCONT");
            await stuck.kill().catch(() => {});
          }
          await cluster.waitForLeader();
        },
      );

      await t.step("the REPL says clearly that a lock was lost before writing", async () => {
        const repl = new LoggedProcess(
          [...dlockCommand(), "client", "--servers", servers, "--ttl", "3", "sleepy"],
          `${cluster.dir}/repl-lost.log`,
          { stdin: "piped" },
        );
        const writer = repl.child.stdin.getWriter();
        const send = (line: string) => writer.write(new TextEncoder().encode(line + "\n"));
        try {
          await send("acquire lost-lock");
          await eventually(
            async () => /acquired lost-lock/.test(await repl.log()) ? true : undefined,
            20_000,
            "the REPL's grant",
          );
          repl.signal("SIGSTOP"); // Past its TTL: the session expires on the cluster.
          await sleep(4_500);
          repl.signal("SIGCONT");
          await sleep(500);
          await send("write notes from a paused client");
          await send("exit");
          await writer.close();
          const status = await withTimeout(repl.exited, 20_000, "the REPL's exit");
          const log = await repl.log();
          assert.equal(status.code, 1, log);
          assert.match(
            log,
            /error: (lock lost-lock \(token \d+\) was lost|NOT_HOLDER: .*lost-lock is not held)/,
          );
          const content = new TextDecoder().decode((await files.read("notes")) ?? new Uint8Array());
          assert.ok(!content.includes("paused client"), "nothing written");
        } finally {
          await writer.close().catch(() => {});
          await repl.kill().catch(() => {});
        }
      });

      await t.step("dlock lock passes the token and the exit code through", async () => {
        const result = await runDlock([
          "lock",
          "--servers",
          servers,
          "job",
          "--",
          "sh",
          "-c",
          'echo "$DLOCK_LOCK $DLOCK_TOKEN"; exit 7',
        ]);
        assert.equal(result.code, 7, result.stderr);
        assert.match(result.stdout.trim(), /^job \d+$/);
        const status = await fetchStatus(cluster.addresses);
        assert.equal(status.locks.find((lock) => lock.name === "job"), undefined, "released");
      });

      await t.step("dlock lock gives up with exit code 3 on timeout", async () => {
        const holder = await connect(cluster.addresses, { name: "holder", ttlMs: 5_000 });
        try {
          await holder.acquire("busy");
          const result = await runDlock([
            "lock",
            "busy",
            "--timeout",
            "0.5",
            "--servers",
            servers,
            "--",
            "true",
          ]);
          assert.equal(result.code, 3, result.stderr);
          assert.match(result.stderr, /timed out after 0.5 s waiting for busy/);
        } finally {
          await holder.close();
        }
      });

      await t.step("dlock lock: --timeout also bounds reaching the cluster (exit 3)", async () => {
        const [unused] = freeServerPorts(1);
        const started = performance.now();
        const result = await runDlock([
          "lock",
          "nowhere",
          "--servers",
          `127.0.0.1:${unused}`,
          "--timeout",
          "1",
          "--",
          "true",
        ]);
        const elapsedMs = performance.now() - started;
        assert.equal(result.code, 3, result.stderr);
        assert.match(result.stderr, /dlock lock: timed out after 1 s opening a session on/);
        // Deno's start-up plus the 1 s, not the client library's 15 s retry bound.
        assert.ok(elapsedMs < 8_000, `took ${elapsedMs} ms`);
      });

      for (const signal of ["SIGTERM", "SIGHUP"] as const) {
        await t.step(
          `dlock lock: ${signal} while COMMAND runs reaches its whole process group`,
          async () => {
            const lockName = `group-${signal}`;
            const pidFile = `${cluster.dir}/grandchild-${signal}`;
            const locker = new LoggedProcess([
              ...dlockCommand(),
              "lock",
              lockName,
              "--servers",
              servers,
              "--",
              "sh",
              "-c",
              `sleep 300 & echo $! > ${pidFile}; wait`,
            ], `${cluster.dir}/locker-${signal}.log`);
            try {
              const grandchild = await eventually(
                async () => {
                  const text = await Deno.readTextFile(pidFile).catch(() => "");
                  return text.endsWith("\n") ? Number(text.trim()) : undefined;
                },
                20_000,
                "COMMAND started its own child",
              );
              locker.signal(signal);
              const exited = await withTimeout(locker.exited, 15_000, "dlock lock's exit");
              // sh dies of the forwarded signal, and its code is passed through.
              assert.equal(exited.code, signal === "SIGHUP" ? 129 : 143, await locker.log());
              assert.equal(
                await processAlive(grandchild),
                false,
                "the grandchild got the signal too",
              );
              const status = await fetchStatus(cluster.addresses);
              assert.equal(status.locks.find((lock) => lock.name === lockName), undefined);
            } finally {
              await locker.kill().catch(() => {});
            }
          },
        );
      }

      await t.step("dlock lock: SIGTERM while waiting leaves the queue and exits 143", async () => {
        const holder = await connect(cluster.addresses, { name: "queue-holder", ttlMs: 10_000 });
        try {
          await holder.acquire("queued");
          const locker = new LoggedProcess([
            ...dlockCommand(),
            "lock",
            "queued",
            "--name",
            "queued-locker",
            "--servers",
            servers,
            "--",
            "true",
          ], `${cluster.dir}/locker-queued.log`);
          try {
            await eventually(
              async () => {
                const status = await fetchStatus(cluster.addresses);
                const lock = status.locks.find((lock) => lock.name === "queued");
                return lock?.waiters.some((waiter) => waiter.clientName === "queued-locker")
                  ? true
                  : undefined;
              },
              20_000,
              "dlock lock waiting for queued",
            );
            locker.signal("SIGTERM");
            const exited = await withTimeout(locker.exited, 10_000, "dlock lock's exit");
            assert.equal(exited.code, 143, await locker.log());
            assert.match(await locker.log(), /SIGTERM while waiting for queued: gave up/);
            const status = await fetchStatus(cluster.addresses);
            assert.equal(
              status.sessions.find((session) => session.clientName === "queued-locker"),
              undefined,
              "its session closed at once, not left to expire",
            );
            assert.deepEqual(status.locks.find((lock) => lock.name === "queued")?.waiters, []);
          } finally {
            await locker.kill().catch(() => {});
          }
        } finally {
          await holder.close();
        }
      });

      await t.step("dlock lock kills the command and exits 4 when the lock is lost", async () => {
        const marker = `${cluster.dir}/lost-marker`;
        const grandchildFile = `${cluster.dir}/lost-grandchild`;
        const locker = new LoggedProcess([
          ...dlockCommand(),
          "lock",
          "lease",
          "--ttl",
          "3",
          "--servers",
          servers,
          "--",
          "sh",
          "-c",
          // A grandchild (sleep 300) must not go on working without the lock either.
          `sleep 300 & echo $! > ${grandchildFile}; ` +
          `trap 'echo terminated > ${marker}; exit 143' TERM; while true; do sleep 0.1; done`,
        ], `${cluster.dir}/locker.log`);
        try {
          await eventually(
            async () => {
              const status = await fetchStatus(cluster.addresses);
              return status.locks.some((lock) => lock.name === "lease") ? true : undefined;
            },
            20_000,
            "dlock lock holding the lease",
          );
          locker.signal("SIGSTOP"); // Its keepalives stop; the command keeps running.
          await sleep(4_500);
          locker.signal("SIGCONT");
          const status = await withTimeout(locker.exited, 20_000, "dlock lock's exit");
          assert.equal(status.code, 4, await locker.log());
          assert.match(await locker.log(), /lost the lock lease/);
          assert.equal((await Deno.readTextFile(marker)).trim(), "terminated");
          const grandchild = Number((await Deno.readTextFile(grandchildFile)).trim());
          assert.equal(await processAlive(grandchild), false, "its process group got SIGTERM");
        } finally {
          await locker.kill().catch(() => {});
        }
      });

      await t.step("dlock status prints a table, and JSON with --json", async () => {
        const holder = await connect(cluster.addresses, { name: "carol", ttlMs: 5_000 });
        try {
          const lock = await holder.acquire("shown");
          const table = await runDlock(["status", cluster.addresses[2] as string]);
          assert.equal(table.code, 0, table.stderr);
          assert.match(table.stdout, /leader 127\.0\.0\.1:\d+ +term \d+ +commit \d+/);
          assert.match(
            table.stdout,
            new RegExp(`shown +${lock.token} +${holder.sessionId} \\(carol\\)`),
          );
          const json = await runDlock(["status", "--json"], { env: { DLOCK_SERVERS: servers } });
          assert.equal(json.code, 0, json.stderr);
          const parsed = JSON.parse(json.stdout) as {
            leader: string;
            members: unknown[];
            locks: { name: string }[];
          };
          assert.equal(parsed.members.length, 3);
          assert.ok(cluster.addresses.includes(parsed.leader));
          assert.ok(parsed.locks.some((l) => l.name === "shown"));
        } finally {
          await holder.close();
        }
      });

      await t.step("bad command lines and bad TTLs get clear errors", async () => {
        const usage = await runDlock(["lock", "--servers", servers, "no-command"]);
        assert.equal(usage.code, 2);
        assert.match(usage.stderr, /missing '-- COMMAND'/);
        const badServers = await runDlock(["status", "--servers", "nonsense"]);
        assert.equal(badServers.code, 2);
        assert.match(
          badServers.stderr,
          /Cannot use nonsense as a server address as it has no port/,
        );
        // A forgotten port, a port out of range, a timeout of zero: usage errors at once,
        // before any server is tried.
        const usageErrors: [string[], RegExp][] = [
          [
            ["client", "127.0.0.1", "alice"],
            /Cannot use 127\.0\.0\.1 as a server address as it has no port: expected HOST:PORT/,
          ],
          [["client", "127.0.0.1:99999"], /port is out of range: expected a port from 1 to 65535/],
          [["status", "127.0.0.1:99999"], /port is out of range/],
          [["lock", "127.0.0.1", "job", "--", "true"], /127\.0\.0\.1 as a server address/],
          [["status", "--servers", servers, "--timeout", "0"], /--timeout as it must be .* > 0/],
          [["lock", "job", "--servers", servers, "--timeout", "0", "--", "true"], /> 0/],
          [
            ["client", "--servers", servers, "--ttl", "0.5"],
            /--ttl as it must be 1\.\.300 seconds/,
          ],
          [["client", "--servers", servers, "--ttl", "500"], /1\.\.300 seconds: received "500"/],
          [
            ["lock", "job", "--servers", servers, "--ttl", "0.2", "--", "true"],
            /--ttl as it must be 1\.\.300 seconds: received "0\.2"/,
          ],
          [["lock", "job", "--servers", servers, "--ttl", "301", "--", "true"], /1\.\.300 seconds/],
          [["client", "--servers", servers, "--name", ""], /as the client name as it is empty/],
          [["lock", "job", "--servers", servers, "--name", " ", "--", "true"], /is empty/],
        ];
        for (const [args, message] of usageErrors) {
          const started = performance.now();
          const result = await runDlock(args, { stdin: "exit\n" });
          assert.equal(result.code, 2, `${args.join(" ")}: ${result.stdout}${result.stderr}`);
          assert.match(result.stderr, message);
          assert.ok(performance.now() - started < 10_000, `${args.join(" ")} failed at once`);
        }
        for (const server of cluster.servers) assert.equal(server?.hasExited, false);
      });
    } finally {
      await cluster.stop();
    }
  },
});

Deno.test({
  name: "dlock cluster up, status and down manage a background cluster by PID",
  ...processTest,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "dlock-cluster-" });
    const [basePort, filewriterPort] = findPortRun();
    try {
      // Bad server flags: a usage error at once, nothing started.
      const badFlags = await runDlock(["cluster", "up", "--dir", dir, "--session-ttl", "0"]);
      assert.equal(badFlags.code, 2, badFlags.stdout + badFlags.stderr);
      assert.match(
        badFlags.stderr,
        /Cannot use --session-ttl as it must be 1\.\.300 seconds: received 0/,
      );
      assert.equal(await exists(`${dir}/cluster.json`), false);
      // Servers that exit at start (a file where each data folder goes): up stops waiting at
      // once, prints each one's error rather than its help, stops the filewriter it started
      // and exits 1, so the next up can run.
      const dataDirs = [0, 1, 2].map((offset) => `${dir}/data/127.0.0.1_${basePort + offset}`);
      await Deno.mkdir(`${dir}/data`, { recursive: true });
      for (const path of dataDirs) await Deno.writeTextFile(path, "not a folder\n");
      const started = performance.now();
      const failed = await runDlock([
        "cluster",
        "up",
        "--dir",
        dir,
        "--base-port",
        String(basePort),
        "--filewriter-port",
        String(filewriterPort),
      ], { timeoutMs: 60_000 });
      assert.equal(failed.code, 1, failed.stdout + failed.stderr);
      assert.ok(performance.now() - started < 25_000, "up gave up at once");
      assert.doesNotMatch(failed.stderr, /no leader within/);
      assert.match(failed.stderr, /server 127\.0\.0\.1:\d+ exited:\n .*Cannot start as the data/);
      assert.doesNotMatch(failed.stderr, /--peer-port-offset/, "the help is not printed");
      assert.equal(await exists(`${dir}/cluster.json`), false);
      const filewriterRefused = await Deno.connect({ hostname: "127.0.0.1", port: filewriterPort })
        .then((connection) => (connection.close(), false), () => true);
      assert.ok(filewriterRefused, "the filewriter was stopped");
      for (const path of dataDirs) await Deno.remove(path);
      const up = await runDlock([
        "cluster",
        "up",
        "--dir",
        dir,
        "--base-port",
        String(basePort),
        "--filewriter-port",
        String(filewriterPort),
        "--election-ms",
        "150",
        "--heartbeat-ms",
        "30",
      ], { timeoutMs: 60_000 });
      assert.equal(up.code, 0, up.stdout + up.stderr);
      assert.match(up.stdout, /leader 127\.0\.0\.1:\d+, term \d+/);
      const servers = [0, 1, 2].map((offset) => `127.0.0.1:${basePort + offset}`);
      const status = await fetchStatus(servers);
      assert.ok(servers.includes(status.leader));
      const shown = await runDlock(["cluster", "status", "--dir", dir]);
      assert.equal(shown.code, 0, shown.stdout + shown.stderr);
      assert.match(shown.stdout, /4 of 4 processes running/);
      const recorded = JSON.parse(await Deno.readTextFile(`${dir}/cluster.json`)) as {
        processes: { pid: number }[];
      };
      const down = await runDlock(["cluster", "down", "--dir", dir], { timeoutMs: 30_000 });
      assert.equal(down.code, 0, down.stdout + down.stderr);
      for (const { pid } of recorded.processes) {
        assert.equal(await processAlive(pid), false, `pid ${pid} stopped`);
      }
      const again = await runDlock(["cluster", "status", "--dir", dir]);
      assert.equal(again.code, 1);
    } finally {
      // Whatever happened, leave nothing running.
      await runDlock(["cluster", "down", "--dir", dir], { timeoutMs: 30_000 }).catch(() => {});
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});

/** A base port with 3 free ports after it, and a free filewriter port. */
function findPortRun(): [number, number] {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * 30_000);
    // The member ports and their peer ports (member port + 10000, the server default).
    const ports = [base, base + 1, base + 2, base + 10_000, base + 10_001, base + 10_002];
    const opened: Deno.Listener[] = [];
    try {
      for (const port of ports) opened.push(Deno.listen({ hostname: "127.0.0.1", port }));
    } catch {
      continue;
    } finally {
      for (const listener of opened) listener.close();
    }
    const [filewriter] = freeServerPorts(1);
    if (filewriter !== undefined && !ports.includes(filewriter)) return [base, filewriter];
  }
  throw new Error("no free port run found");
}

async function processAlive(pid: number): Promise<boolean> {
  try {
    const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

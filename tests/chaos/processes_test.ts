/** The process manager on real processes: kill -9, SIGSTOP/SIGCONT, crash detection. */
import assert from "node:assert/strict";
import { ManagedProcess } from "./processes.ts";
import { sleep } from "./nemesis.ts";

async function state(pid: number): Promise<string> {
  const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0] ?? "?";
}

async function waitFor(condition: () => boolean | Promise<boolean>, timeoutMs = 5_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await sleep(20);
  }
}

Deno.test({
  name: "a managed process is paused, resumed, killed and restarted",
  ignore: Deno.build.os !== "linux",
  fn: async () => {
    const directory = await Deno.makeTempDir();
    const process = new ManagedProcess("sleeper", ["sleep", "30"], `${directory}/log`);
    try {
      process.start();
      const pid = process.pid ?? 0;
      await waitFor(async () => (await state(pid)) === "S");
      process.pause();
      await waitFor(async () => (await state(pid)) === "T");
      process.resume();
      await waitFor(async () => (await state(pid)) === "S");
      await process.kill();
      assert.equal(process.running, false);
      await assert.rejects(Deno.stat(`/proc/${pid}`));
      process.start();
      assert.equal(process.starts, 2);
      assert.notEqual(process.pid, pid);
      assert.deepEqual(process.unexpectedExits, [], "kills by the harness are not crashes");
      assert.match(await Deno.readTextFile(`${directory}/log`), /start #2: sleep 30/);
    } finally {
      await process.kill();
      await Deno.remove(directory, { recursive: true });
    }
  },
});

Deno.test({
  name: "a process that exits on its own is reported and restarted when supervised",
  ignore: Deno.build.os !== "linux",
  fn: async () => {
    const directory = await Deno.makeTempDir();
    const process = new ManagedProcess(
      "crasher",
      ["bash", "-c", "echo ran >&2; exit 3"],
      `${directory}/log`,
    );
    try {
      process.restartAfterCrashMs = 50;
      process.start();
      await waitFor(() => process.unexpectedExits.length >= 2);
      process.restartAfterCrashMs = null;
      assert.equal(process.unexpectedExits[0]?.code, 3);
      assert.ok(process.starts >= 2);
      await waitFor(() => !process.running);
      // Output goes to the log, stderr included.
      assert.match(await Deno.readTextFile(`${directory}/log`), /ran/);
      // An exit the harness expects is not a crash.
      const worker = new ManagedProcess("worker", ["true"], `${directory}/worker.log`);
      worker.start();
      worker.expectExit();
      assert.equal(await worker.waitExit(5_000), 0);
      assert.deepEqual(worker.unexpectedExits, []);
    } finally {
      process.restartAfterCrashMs = null;
      await process.kill();
      await Deno.remove(directory, { recursive: true });
    }
  },
});

/**
 * Runs `bench/main.ts --smoke --json` against a dlock cluster the bench starts (a few
 * seconds, tiny counts) and checks that every scenario produced sane numbers and that
 * no server process outlived the bench, so the bench cannot rot.
 */
import assert from "node:assert/strict";
import type { BenchReport, Figure } from "../bench/report.ts";

const benchMain = new URL("../bench/main.ts", import.meta.url).pathname;
const denoConfig = new URL("../deno.json", import.meta.url).pathname;

/** Pids of processes whose command line mentions `text`. */
async function processesMentioning(text: string): Promise<number[]> {
  const pids: number[] = [];
  for await (const entry of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    const cmdline = await Deno.readTextFile(`/proc/${entry.name}/cmdline`).catch(() => "");
    if (cmdline.includes(text)) pids.push(Number(entry.name));
  }
  return pids;
}

function figure(report: BenchReport, id: string): Figure {
  const found = report.figures.find((candidate) => candidate.id === id);
  assert.ok(found !== undefined, `figure ${id} is in the report`);
  return found;
}

function dlockMedian(report: BenchReport, id: string): number {
  const value = figure(report, id).values.dlock?.median;
  assert.ok(value !== undefined, `figure ${id} has a dlock value`);
  return value;
}

Deno.test({
  name: "bench --smoke runs every scenario against dlock with sane figures",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    // A private TMPDIR: the bench's cluster data dirs (and so the servers' command
    // lines) live under it, which lets us check afterwards that no server survived.
    const tmpDir = await Deno.makeTempDir({ prefix: "bench-smoke-" });
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), 180_000);
    try {
      const output = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", "--config", denoConfig, benchMain, "--smoke", "--json"],
        env: { TMPDIR: tmpDir },
        stdout: "piped",
        stderr: "piped",
        signal: controller.signal,
      }).output();
      const stdout = new TextDecoder().decode(output.stdout);
      const stderr = new TextDecoder().decode(output.stderr);
      assert.equal(output.code, 0, `bench exited ${output.code}; stderr:\n${stderr.slice(-4_000)}`);
      const report = JSON.parse(stdout) as BenchReport;

      assert.deepEqual(report.systems.map((system) => system.system), ["dlock"]);
      const dlock = report.systems[0];
      assert.ok(dlock !== undefined);
      assert.equal(dlock.status, "ok", `dlock: ${dlock.reason} ${JSON.stringify(dlock.problems)}`);

      // a: throughput and ordered, bounded percentiles for every client count.
      for (const clients of report.options.clients) {
        const prefix = `a.${clients}`;
        assert.ok(dlockMedian(report, `${prefix}.pairsPerSecond`) > 0, `${prefix} throughput`);
        const p50 = dlockMedian(report, `${prefix}.p50Ms`);
        const p99 = dlockMedian(report, `${prefix}.p99Ms`);
        const p999 = dlockMedian(report, `${prefix}.p999Ms`);
        assert.ok(
          p50 > 0 && p50 <= p99 && p99 <= p999 && p999 < 10_000,
          `${prefix}: ${p50} ${p99} ${p999}`,
        );
      }
      // b: handoffs happen, waits are ordered, every client got the lock, FIFO held.
      assert.ok(dlockMedian(report, "b.handoffsPerSecond") > 0);
      const waitP50 = dlockMedian(report, "b.waitP50Ms");
      const waitP99 = dlockMedian(report, "b.waitP99Ms");
      assert.ok(
        waitP50 > 0 && waitP50 <= waitP99 && waitP99 < 10_000,
        `b waits ${waitP50} ${waitP99}`,
      );
      assert.ok(dlockMedian(report, "b.fewestAcquisitions") >= 1, "every contender acquired");
      assert.equal(dlockMedian(report, "b.fifo"), 1, "contended grants were FIFO");
      // c: the loop recovered after the leader kill, within a bounded gap.
      const run = dlock.failover[0];
      assert.ok(run !== undefined && run.kills.length === report.options.kills);
      for (const kill of run.kills) {
        assert.ok(kill.recovered, "the client succeeded again after the leader kill");
        assert.ok(kill.gapMs > 0 && kill.gapMs < 30_000, `failover gap ${kill.gapMs}`);
      }
      // d: all locks held, memory read, the cluster served again after a full restart.
      assert.equal(dlockMedian(report, "d.locksHeld"), report.options.locks);
      assert.ok(dlockMedian(report, "d.rssMiBMax") > 0);
      const restartMs = dlockMedian(report, "d.restartToServingMs");
      assert.ok(restartMs > 0 && restartMs < 120_000, `restart to serving ${restartMs}`);

      assert.deepEqual(await processesMentioning(tmpDir), [], "no server outlived the bench");
    } finally {
      clearTimeout(timer);
      for (const pid of await processesMentioning(tmpDir)) {
        try {
          Deno.kill(pid, "SIGKILL");
        } catch {
          // Gone already.
        }
      }
      await Deno.remove(tmpDir, { recursive: true }).catch(() => {});
    }
  },
});

/**
 * Regression test for a chaos finding (seed 9101, 2026-11-26): a 3-server cluster had no
 * leader for 3.5 s after its leader was cut off, though the other two servers could
 * reach each other.
 *
 * The server that was leader (2) had been unable to hear the others for 7.1 s (a one-way
 * partition, healed 1.7 s before): it stepped down, server 1 was elected, and all that 2
 * sent meanwhile reached the others but their TCP acknowledgements did not reach 2, so
 * its connections 2→0 and 2→1 were deep in TCP's retransmission backoff (the next
 * retransmission seconds after the heal). Then the new leader (1) was cut off both ways:
 * servers 0 and 2 had to elect one, and 2's requests and votes travelled on the stalled
 * 2→0 connection. No leader until that partition ended.
 *
 * Fixed in src/transport/tcp.ts: the receiving side acknowledges what it reads, and a
 * link whose writes go unacknowledged for `stallMs` (1 s) dials a new connection; a
 * connect attempt gives up after as long.
 *
 * Here the same, with real servers in network namespaces (root on Linux only; skipped
 * elsewhere, and says so): the leader L cannot hear the others for 7 s, they elect N; a
 * second after the heal N is cut off both ways, and L and the third server must elect a
 * leader within 3 s (an election timeout is 300–600 ms). Against the code before the fix
 * this failed 2 runs of 2 (no leader within 3 s); with it, 3 of 3 elected one in
 * 318–1,040 ms.
 */
import assert from "node:assert/strict";
import { Cluster } from "./cluster.ts";
import { NetworkLab, networkSupport, RunSlot } from "./netns.ts";
import { sleep } from "./nemesis.ts";

const support = await networkSupport();
if (!support.available) {
  console.error(
    `skipped: the stalled-link regression test needs network namespaces (${support.reason})`,
  );
}

/** The first of `addresses` found claiming leadership within `timeoutMs`, or null. */
async function leaderAmong(
  cluster: Cluster,
  addresses: string[],
  timeoutMs: number,
): Promise<string | null> {
  const started = performance.now();
  while (performance.now() - started < timeoutMs) {
    const leader = await cluster.probe.leader(addresses, 500);
    if (leader !== null) return leader;
    await sleep(100);
  }
  return null;
}

Deno.test({
  name:
    "after a one-way partition heals, the leader's isolation does not leave the rest leaderless",
  ignore: !support.available,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const runSlot = await RunSlot.claim();
    const directory = await Deno.makeTempDir({ prefix: "dlock-chaos-stalled-link-" });
    let lab: NetworkLab | null = null;
    let cluster: Cluster | null = null;
    try {
      lab = await NetworkLab.create(3, runSlot);
      await lab.selfTest();
      cluster = await Cluster.create({
        servers: 3,
        directory,
        sessionTtlMs: 3_000,
        lab,
        recordProcess: (pid) => runSlot.recordProcess(pid),
      });
      const leader = await cluster.start(30_000);
      const addresses = cluster.serverAddresses;
      const l = addresses.indexOf(leader);
      const others = [(l + 1) % 3, (l + 2) % 3];

      // 1. The leader hears nothing for 7 s: it steps down, the others elect one of them,
      // and what the old leader sends them meanwhile goes unacknowledged.
      const blockedAt = performance.now();
      for (const from of others) await lab.block(from, l);
      const next = await leaderAmong(cluster, others.map((i) => addresses[i]!), 5_000);
      assert.ok(next !== null, "no new leader while the old one could not hear the others");
      const n = addresses.indexOf(next);
      const o = others.find((i) => i !== n)!;
      await sleep(7_000 - (performance.now() - blockedAt));
      await lab.heal();
      await sleep(1_000);
      // 2. The new leader is cut off both ways: the old leader and the third server must
      // elect one, over the old leader's connection that was unacknowledged for 7 s.
      for (const [from, to] of [[n, l], [l, n], [n, o], [o, n]] as const) {
        await lab.block(from, to);
      }
      const cutAt = performance.now();
      const rest = [addresses[l]!, addresses[o]!];
      const elected = await leaderAmong(cluster, rest, 3_000);
      const tookMs = Math.round(performance.now() - cutAt);
      if (elected === null) {
        for (const server of cluster.servers) {
          console.error(`--- ${server.name}\n${await Deno.readTextFile(server.logPath)}`);
        }
      }
      assert.ok(
        elected !== null,
        `no leader among ${rest.join(", ")} within 3 s of cutting off ${next}`,
      );
      console.error(`elected ${elected} ${tookMs} ms after cutting off ${next}`);
    } finally {
      await cluster?.killAll();
      await lab?.teardown();
      await runSlot.release();
      await Deno.remove(directory, { recursive: true }).catch(() => {});
    }
  },
});

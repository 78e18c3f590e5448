/**
 * The network lab as root on Linux: partitions verifiably cut traffic, teardown removes
 * everything, and leftovers of a crashed run are cleaned up. Skipped (and says so)
 * without root or `ip`.
 */
import assert from "node:assert/strict";
import { NetworkLab, networkSupport, removeLeftovers, RunSlot } from "./netns.ts";

const support = await networkSupport();

async function run(...command: string[]): Promise<string> {
  const [program, ...args] = command;
  const output = await new Deno.Command(program ?? "true", { args, stdout: "piped" }).output();
  return new TextDecoder().decode(output.stdout);
}

Deno.test({
  name: "network lab: self-test passes, routes cut and heal, teardown leaves nothing",
  ignore: !support.available,
  fn: async () => {
    const lab = await NetworkLab.create(2, await RunSlot.claim());
    try {
      await lab.selfTest();
      assert.deepEqual(lab.blockedPairs(), [], "the self-test heals after itself");
      const target = lab.serverAddresses[1] ?? "";
      await lab.block(0, 1);
      assert.ok(await lab.routesToBlackhole(0, target));
      assert.ok(!(await lab.routesToBlackhole(1, lab.serverAddresses[0] ?? "")), "one way only");
      await lab.heal();
      assert.ok(!(await lab.routesToBlackhole(0, target)));
    } finally {
      await lab.teardown();
    }
    assert.ok(!(await run("ip", "netns", "list")).includes(lab.namespace(0)));
    assert.ok(!(await run("ip", "-o", "link", "show")).includes(lab.bridge));
  },
});

Deno.test({
  name: "network lab: leftovers of a dead run are removed, a live run's are kept",
  ignore: !support.available,
  fn: async () => {
    const live = await NetworkLab.create(1, await RunSlot.claim());
    // A crashed run: a namespace and bridge in a slot whose owner process is gone.
    const slot = 60;
    await Deno.writeTextFile(`/tmp/dlock-chaos-slots/slot-${slot}`, "999999999 0\n");
    await run("ip", "netns", "add", `dlc${slot}n0`);
    await run("ip", "link", "add", `dlc${slot}br`, "type", "bridge");
    try {
      const removed = await removeLeftovers();
      assert.ok(removed.includes(`dlc${slot}n0`));
      assert.ok(removed.includes(`dlc${slot}br`));
      assert.ok(!removed.some((name) => name.startsWith(`dlc${live.slot}`)), "live run kept");
      assert.ok((await run("ip", "netns", "list")).includes(live.namespace(0)));
    } finally {
      await live.teardown();
      await run("ip", "netns", "del", `dlc${slot}n0`);
      await run("ip", "link", "del", `dlc${slot}br`);
    }
  },
});

if (!support.available) {
  console.log(`network lab tests skipped: ${support.reason}`);
}

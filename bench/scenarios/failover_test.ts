import assert from "node:assert/strict";
import { longestGap } from "./failover.ts";

Deno.test("longestGap spans the stall after a pair that completed just after the kill", () => {
  // Pairs every 10 ms, kill at 100, one in-flight pair completes at 103, then a stall.
  const completions = [70, 80, 90, 100, 103, 1_500, 1_510, 1_520];
  assert.equal(longestGap(completions, 100), 1_397);
});

Deno.test("longestGap measures from the last completion before the kill", () => {
  assert.equal(longestGap([10, 20, 30, 900, 910], 35), 870);
  // Nothing completed before the kill: measured from the kill.
  assert.equal(longestGap([500, 510], 100), 400);
});

import assert from "node:assert/strict";
import { DeadlineQueue } from "./deadline_queue.ts";

Deno.test("deadline queue: pops due items earliest first, keeps the rest", () => {
  const queue = new DeadlineQueue<string>();
  assert.equal(queue.peekDeadlineMs(), Infinity);
  const deadlines = [50, 10, 40, 10, 30, 20, 60, 5];
  deadlines.forEach((deadline, index) => queue.push(deadline, `${deadline}/${index}`));
  assert.equal(queue.peekDeadlineMs(), 5);
  const due = queue.popDue(30);
  assert.deepEqual(due.map((item) => Number(item.split("/")[0])), [5, 10, 10, 20, 30]);
  assert.equal(queue.size, 3);
  assert.deepEqual(queue.popDue(Infinity).map((item) => Number(item.split("/")[0])), [40, 50, 60]);
  queue.push(1, "x");
  queue.clear();
  assert.equal(queue.size, 0);
});

Deno.test("deadline queue: random pushes come out sorted", () => {
  const queue = new DeadlineQueue<number>();
  let seed = 7;
  const values: number[] = [];
  for (let index = 0; index < 1000; index++) {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    values.push(seed % 10_000);
    queue.push(seed % 10_000, seed % 10_000);
  }
  assert.deepEqual(queue.popDue(Infinity), values.sort((x, y) => x - y));
});

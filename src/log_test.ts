import assert from "node:assert/strict";
import { createLogger } from "./log.ts";

Deno.test("log: text lines are readable, json lines parse, levels filter, children add fields", () => {
  const lines: string[] = [];
  const text = createLogger({ format: "text", level: "info", write: (line) => lines.push(line) });
  text.debug("hidden");
  text.info("serving", { address: "127.0.0.1:5000", note: "two words" });
  text.child({ component: "raft" }).warn("slow", { ms: 12 });
  assert.equal(lines.length, 2);
  assert.match(
    lines[0]!,
    /^\d\d:\d\d:\d\d\.\d{3} INFO {2}serving address=127\.0\.0\.1:5000 note="two words"$/,
  );
  assert.match(lines[1]!, /WARN {2}slow component=raft ms=12$/);

  const json: string[] = [];
  const logger = createLogger({ format: "json", level: "debug", write: (line) => json.push(line) });
  logger.debug("d", { error: new Error("boom"), big: 1n });
  const record = JSON.parse(json[0]!);
  assert.equal(record.level, "debug");
  assert.equal(record.msg, "d");
  assert.equal(record.error, "boom");
  assert.equal(record.big, "1");
  assert.ok(!Number.isNaN(Date.parse(record.time)));
  assert.equal(logger.enabled("debug"), true);
  assert.equal(text.enabled("debug"), false);
});

import assert from "node:assert/strict";

const forbidden = [
  /\bDeno\./,
  /\bsetTimeout\b/,
  /\bsetInterval\b/,
  /\bDate\.now\b/,
  /\bnew Date\b/,
  /\bMath\.random\b/,
  /\bperformance\./,
  /\bcrypto\./,
  /\bfetch\(/,
  /\bqueueMicrotask\b/,
];
const allowedImports = /^(\.\/[\w.]+\.ts|\.\.\/limits\.ts|\.\.\/errors\.ts)$/;

Deno.test("src/lock is pure: no clocks, timers, randomness or I/O; imports stay inside", async () => {
  const folder = new URL("./", import.meta.url);
  let checked = 0;
  for await (const entry of Deno.readDir(folder)) {
    if (!entry.isFile || !entry.name.endsWith(".ts") || entry.name.endsWith("_test.ts")) continue;
    const source = await Deno.readTextFile(new URL(entry.name, folder));
    const code = source.replace(/\/\*[\s\S]*?\*\//g, "").replace(/\/\/.*$/gm, "");
    for (const pattern of forbidden) {
      assert.ok(!pattern.test(code), `${entry.name} uses ${pattern}`);
    }
    for (const match of code.matchAll(/\bfrom\s+"([^"]+)"|\bimport\s*\(\s*"([^"]+)"/g)) {
      const specifier = match[1] ?? match[2] ?? "";
      assert.match(specifier, allowedImports, `${entry.name} imports ${specifier}`);
    }
    checked++;
  }
  assert.ok(checked >= 8, `only ${checked} files checked`);
});

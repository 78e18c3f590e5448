/**
 * src/raft/ and src/lock/ are pure (STYLE.md, convention 1): no I/O, clocks or global
 * randomness. This test reads their sources and fails on any forbidden use outside
 * comments and string literals.
 */

import assert from "node:assert/strict";

const pureDirectories = ["src/raft", "src/lock"];

const forbidden: readonly { pattern: RegExp; what: string }[] = [
  { pattern: /\bDeno\s*\./, what: "Deno.*" },
  { pattern: /\bsetTimeout\b/, what: "setTimeout" },
  { pattern: /\bsetInterval\b/, what: "setInterval" },
  { pattern: /\bqueueMicrotask\b/, what: "queueMicrotask" },
  { pattern: /\bDate\s*\.\s*now\b/, what: "Date.now" },
  { pattern: /\bnew\s+Date\b/, what: "new Date" },
  { pattern: /\bMath\s*\.\s*random\b/, what: "Math.random" },
  { pattern: /\bperformance\s*\.\s*now\b/, what: "performance.now" },
  { pattern: /\bcrypto\s*\.\s*(getRandomValues|randomUUID)\b/, what: "crypto randomness" },
  { pattern: /\bfetch\s*\(/, what: "fetch" },
  {
    pattern: /from\s+["'][^"']*(grpc|proto-loader|mongodb|etcd3|zookeeper)[^"']*["']/,
    what: "network library import",
  },
  {
    pattern: /from\s+["']node:(fs|net|http|https|dgram|child_process|worker_threads|os)[^"']*["']/,
    what: "node I/O import",
  },
  { pattern: /import\s*\(/, what: "dynamic import" },
  { pattern: /\bopenKv\b/, what: "Deno KV" },
];

/** Removes comments and the contents of string literals, keeping line numbers. */
export function stripCommentsAndStrings(source: string): string {
  let result = "";
  let k = 0;
  while (k < source.length) {
    const char = source[k]!;
    const next = source[k + 1];
    if (char === "/" && next === "/") {
      while (k < source.length && source[k] !== "\n") k++;
    } else if (char === "/" && next === "*") {
      k += 2;
      while (k < source.length && !(source[k] === "*" && source[k + 1] === "/")) {
        if (source[k] === "\n") result += "\n";
        k++;
      }
      k += 2;
    } else if (char === '"' || char === "'" || char === "`") {
      // Keep import specifiers (they matter), blank other strings.
      const quote = char;
      let text = "";
      k++;
      while (k < source.length && source[k] !== quote) {
        if (source[k] === "\\") {
          text += source[k + 1] ?? "";
          k += 2;
          continue;
        }
        text += source[k];
        k++;
      }
      k++;
      const isSpecifier = /(from|import)\s*\(?\s*$/.test(result.slice(-16));
      result += quote + (isSpecifier ? text : text.replace(/[^\n]/g, " ")) + quote;
    } else {
      result += char;
      k++;
    }
  }
  return result;
}

async function* sourceFiles(directory: string): AsyncGenerator<string> {
  for await (const entry of Deno.readDir(directory)) {
    const path = `${directory}/${entry.name}`;
    if (entry.isDirectory) yield* sourceFiles(path);
    else if (entry.isFile && /\.ts$/.test(entry.name) && !/_test\.ts$/.test(entry.name)) yield path;
  }
}

Deno.test("purity: src/raft and src/lock do no I/O and read no clock or global randomness", async () => {
  const root = new URL("../", import.meta.url).pathname;
  const findings: string[] = [];
  let files = 0;
  for (const directory of pureDirectories) {
    for await (const path of sourceFiles(`${root}${directory}`)) {
      files++;
      const code = stripCommentsAndStrings(await Deno.readTextFile(path));
      for (const [line, text] of code.split("\n").entries()) {
        for (const rule of forbidden) {
          if (rule.pattern.test(text)) {
            findings.push(`${path.slice(root.length)}:${line + 1}: ${rule.what}`);
          }
        }
      }
    }
  }
  assert.ok(files >= 4, `found only ${files} source files`);
  assert.deepEqual(findings, [], `forbidden I/O in pure modules:\n${findings.join("\n")}`);
});

Deno.test("purity: the scanner sees through comments but not around code", () => {
  const stripped = stripCommentsAndStrings(
    `// Date.now() in a comment\n/* Math.random() */ const a = "Deno.exit";\nconst b = Date.now();\nimport x from "node:fs";`,
  );
  const lines = stripped.split("\n");
  assert.ok(!forbidden.some((rule) => rule.pattern.test(lines[0]!)));
  assert.ok(!forbidden.some((rule) => rule.pattern.test(lines[1]!)));
  assert.ok(forbidden.some((rule) => rule.pattern.test(lines[2]!)));
  assert.ok(forbidden.some((rule) => rule.pattern.test(lines[3]!)));
});

/**
 * Test helper: runs `dlock filewriter` as a real process (`deno run -A src/main.ts
 * filewriter ...`) on a free loopback port and waits for its "listening" line.
 *
 * @module
 */

const mainPath = new URL("../../src/main.ts", import.meta.url).pathname;
const startTimeoutMs = 20_000;

/** A running filewriter process. */
export type FilewriterProcess = {
  child: Deno.ChildProcess;
  /** `http://127.0.0.1:PORT`. */
  url: string;
  /** Everything written to stdout / stderr so far. */
  output(): { stdout: string; stderr: string };
  /** Sends a signal if the process still runs. */
  kill(signal: Deno.Signal): void;
  /** Waits for the exit and for stderr to be read to its end. */
  exited(): Promise<Deno.CommandStatus>;
  /** Kills (SIGKILL) if still running and waits for the exit; safe to call twice. */
  [Symbol.asyncDispose](): Promise<void>;
};

/** Spawns `dlock filewriter` with `args`; the process is not waited for. */
export function spawnFilewriterProcess(args: string[]): {
  child: Deno.ChildProcess;
  output(): { stdout: string; stderr: string };
  lines: ReadableStream<string>;
  stderrDone: Promise<void>;
} {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", mainPath, "filewriter", ...args],
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  }).spawn();
  let stdout = "";
  let stderr = "";
  const [forTest, forBuffer] = child.stdout.pipeThrough(new TextDecoderStream()).tee();
  (async () => {
    for await (const chunk of forBuffer) stdout += chunk;
  })();
  const stderrDone = (async () => {
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) stderr += chunk;
  })();
  return { child, output: () => ({ stdout, stderr }), lines: forTest, stderrDone };
}

/**
 * Starts a filewriter listening on 127.0.0.1 with a free port.
 * @throws {Error} when it exits or prints no "listening" line within 20 s.
 */
export async function startFilewriterProcess(extraArgs: string[]): Promise<FilewriterProcess> {
  const { child, output, lines, stderrDone } = spawnFilewriterProcess([
    "--listen",
    "127.0.0.1:0",
    ...extraArgs,
  ]);
  let exited = false;
  const status = child.status.then((value) => {
    exited = true;
    return value;
  });
  const url = await waitForListening(lines, status, output).catch(async (error) => {
    if (!exited) child.kill("SIGKILL");
    await status;
    throw error;
  });
  return {
    child,
    url,
    output,
    kill(signal) {
      if (!exited) child.kill(signal);
    },
    async exited() {
      const value = await status;
      await stderrDone;
      return value;
    },
    async [Symbol.asyncDispose]() {
      if (!exited) child.kill("SIGKILL");
      await status;
      await stderrDone;
    },
  };
}

async function waitForListening(
  lines: ReadableStream<string>,
  status: Promise<Deno.CommandStatus>,
  output: () => { stdout: string; stderr: string },
): Promise<string> {
  const reader = lines.getReader();
  let seen = "";
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`filewriter did not start in time: ${JSON.stringify(output())}`)),
      startTimeoutMs,
    );
  });
  const exit = status.then((value) => {
    throw new Error(`filewriter exited with ${value.code}: ${JSON.stringify(output())}`);
  });
  try {
    while (true) {
      const next = await Promise.race([reader.read(), deadline, exit]);
      if (next.done) throw new Error(`filewriter closed stdout: ${JSON.stringify(output())}`);
      seen += next.value;
      const match = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(seen);
      if (match?.[1] !== undefined) {
        // Keep draining the test branch of the tee so the process never blocks on stdout.
        (async () => {
          while (!(await reader.read()).done) { /* drain */ }
        })().catch(() => {});
        return match[1];
      }
    }
  } finally {
    clearTimeout(timer);
    exit.catch(() => {});
  }
}

/** POSTs JSON and returns the status and parsed body. */
export async function postJson(
  url: string,
  body: unknown,
  signal?: AbortSignal,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
    ...(signal === undefined ? {} : { signal }),
  });
  return { status: response.status, body: await response.json() };
}

/** Sends a raw HTTP/1.1 request line (no URL normalisation by a client) and returns the status. */
export async function rawRequest(
  port: number,
  method: string,
  target: string,
  body = "",
): Promise<{ status: number; text: string }> {
  const connection = await Deno.connect({ hostname: "127.0.0.1", port });
  let closed = false;
  const close = () => {
    if (!closed) connection.close();
    closed = true;
  };
  const timer = setTimeout(close, 10_000); // a hard bound on the whole exchange
  try {
    const request = `${method} ${target} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n` +
      `content-type: application/json\r\ncontent-length: ${
        new TextEncoder().encode(body).length
      }\r\n\r\n${body}`;
    await connection.write(new TextEncoder().encode(request));
    let text = "";
    const buffer = new Uint8Array(64 * 1024);
    while (true) {
      const count = await connection.read(buffer);
      if (count === null) break;
      text += new TextDecoder().decode(buffer.subarray(0, count));
    }
    const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? "0");
    return { status, text };
  } finally {
    clearTimeout(timer);
    close();
  }
}

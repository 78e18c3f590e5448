/**
 * `deno task demo`: the whole dlock flow in one command. Starts a local cluster (3 lock
 * servers and a filewriter, on free ports, in a temporary folder), then walks two
 * clients through acquire / write / block / release / fenced write, prints the file,
 * and shuts everything down. Exits 0 only if every step behaved as expected.
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { connect, type DlockClient, StaleFenceError } from "../src/client/mod.ts";
import { dlockCommand } from "../src/cli/cluster.ts";
import { FilewriterClient } from "../src/filewriter/mod.ts";

const lockName = "demo";
const fileName = "demo.txt";
let failures = 0;
let stepNumber = 0;

function step(text: string): void {
  stepNumber++;
  console.log(`\n${String(stepNumber).padStart(2)}. ${text}`);
}

function show(text: string): void {
  console.log(`    ${text}`);
}

function expect(condition: boolean, text: string): void {
  if (condition) {
    show(`ok: ${text}`);
  } else {
    failures++;
    show(`FAILED: ${text}`);
  }
}

async function dlock(args: string[]): Promise<{ code: number; output: string }> {
  const [program, ...rest] = dlockCommand() as [string, ...string[]];
  const output = await new Deno.Command(program, {
    args: [...rest, ...args],
    stdout: "piped",
    stderr: "piped",
    cwd: fileURLToPath(new URL("..", import.meta.url)),
  }).output();
  const text = new TextDecoder().decode(output.stdout) + new TextDecoder().decode(output.stderr);
  return { code: output.code, output: text.trimEnd() };
}

/** A base port with the next two also free, and a separate free port for the filewriter. */
function freePorts(): { basePort: number; filewriterPort: number } {
  for (let attempt = 0; attempt < 100; attempt++) {
    const basePort = 20_000 + Math.floor(Math.random() * 30_000);
    const filewriterPort = basePort + 10;
    const opened: Deno.Listener[] = [];
    try {
      for (const port of [basePort, basePort + 1, basePort + 2, filewriterPort]) {
        opened.push(Deno.listen({ hostname: "127.0.0.1", port }));
      }
      return { basePort, filewriterPort };
    } catch {
      // Taken: try another range.
    } finally {
      for (const listener of opened) listener.close();
    }
  }
  throw new Error("Cannot run the demo as no free ports were found");
}

async function waitUntil(check: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    if (check()) return true;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return check();
}

async function scenario(servers: string[], filewriterAddress: string): Promise<void> {
  let alice: DlockClient | null = null;
  let bob: DlockClient | null = null;
  try {
    step("Two clients open sessions (TTL 10 s): alice and bob");
    alice = await connect(servers, { name: "alice", ttlMs: 10_000 });
    bob = await connect(servers, { name: "bob", ttlMs: 10_000 });
    show(
      `alice: session ${alice.sessionId}, bob: session ${bob.sessionId}, leader ${alice.leader}`,
    );

    step(`alice acquires the lock "${lockName}"`);
    const aliceLock = await alice.acquire(lockName);
    show(`alice holds "${lockName}" with fencing token ${aliceLock.token}`);

    step(`alice appends a line to ${fileName} through the lock service`);
    const aliceWrite = await aliceLock.append(
      fileName,
      `alice was here (token ${aliceLock.token})\n`,
    );
    expect(aliceWrite.offset === 0, `written at offset ${aliceWrite.offset}`);

    step(`bob asks for "${lockName}" and waits (alice holds it)`);
    let bobGranted = false;
    const bobWaiting = bob.acquire(lockName, { timeoutMs: 30_000 }).then((lock) => {
      bobGranted = true;
      return lock;
    });
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(!bobGranted, "bob is still waiting after 0.5 s");
    const queue = (await alice.status()).locks.find((lock) => lock.name === lockName);
    show(
      `status: holder ${queue?.holderName} (token ${queue?.token}), waiting: ${
        queue?.waiters.map((w) => w.clientName).join(", ")
      }`,
    );

    step(`alice releases "${lockName}"`);
    await aliceLock.release();
    const bobLock = await bobWaiting;
    expect(await waitUntil(() => bobGranted, 1_000), "bob is granted the lock");
    expect(
      bobLock.token > aliceLock.token,
      `bob's token ${bobLock.token} is higher than alice's ${aliceLock.token}`,
    );

    step(`bob appends a line to ${fileName}`);
    const bobWrite = await bobLock.append(fileName, `bob was here (token ${bobLock.token})\n`);
    show(`written at offset ${bobWrite.offset}`);

    step(
      `alice, unaware she lost the lock, writes straight to the filewriter with her old token ${aliceLock.token}`,
    );
    const files = new FilewriterClient(filewriterAddress);
    try {
      await files.append({
        file: fileName,
        lock: lockName,
        token: aliceLock.token,
        data: "alice's stale write\n",
      });
      expect(false, "the stale write is rejected");
    } catch (error) {
      expect(
        error instanceof StaleFenceError,
        `the filewriter rejects it: ${error instanceof Error ? error.message : String(error)}`,
      );
    }

    step(`bob releases "${lockName}"`);
    await bobLock.release();
    show("released");

    step(`the content of ${fileName}`);
    const content = new TextDecoder().decode((await files.read(fileName)) ?? new Uint8Array());
    for (const line of content.trimEnd().split("\n")) show(`| ${line}`);
    expect(
      content ===
        `alice was here (token ${aliceLock.token})\nbob was here (token ${bobLock.token})\n`,
      "the file holds alice's and bob's lines, and not the stale write",
    );
  } finally {
    await alice?.close().catch(() => {});
    await bob?.close().catch(() => {});
  }
}

async function main(): Promise<number> {
  const dir = await Deno.makeTempDir({ prefix: "dlock-demo-" });
  const { basePort, filewriterPort } = freePorts();
  const servers = [0, 1, 2].map((offset) => `127.0.0.1:${basePort + offset}`);
  const filewriterAddress = `127.0.0.1:${filewriterPort}`;
  try {
    step(`Start a cluster: 3 lock servers and a filewriter (dlock cluster up --dir ${dir})`);
    const up = await dlock([
      "cluster",
      "up",
      "--dir",
      dir,
      "--base-port",
      String(basePort),
      "--filewriter-port",
      String(filewriterPort),
    ]);
    for (const line of up.output.split("\n")) show(line);
    if (up.code !== 0) {
      failures++;
      show("FAILED: the cluster did not come up");
      return 1;
    }
    await scenario(servers, filewriterAddress);
  } catch (error) {
    failures++;
    show(`FAILED: ${error instanceof Error ? error.message : String(error)}`);
  } finally {
    step("Stop the cluster (dlock cluster down)");
    const down = await dlock(["cluster", "down", "--dir", dir]);
    for (const line of down.output.split("\n")) show(line);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  console.log(
    failures === 0
      ? "\ndemo: every step behaved as expected"
      : `\ndemo: ${failures} step(s) failed`,
  );
  return failures === 0 ? 0 : 1;
}

if (import.meta.main) Deno.exit(await main());

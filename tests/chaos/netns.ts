/**
 * A network lab for chaos runs: one Linux network namespace per server, each joined by a
 * veth pair to a bridge in the root namespace, on a private /24 that exists only inside
 * this lab (`10.231.<slot>.0/24`: servers `.1`…, the root namespace `.254`). Partitions are
 * `blackhole` routes inside a server's namespace: a route in A for B's address drops A's
 * packets to B (one-way); routes on both sides cut both ways. Healing deletes the routes.
 *
 * With TCP, one-way loss stalls connections in both directions (acknowledgements are lost
 * too), but the two sides see it differently: the blocked side fails its sends at once,
 * the other side sees silence. That is the one-way fault IP-level tools (iptables DROP,
 * routes) give, as in Jepsen.
 *
 * Runs are isolated by a slot number: names carry it (`dlc<slot>n<i>` namespaces,
 * `dlc<slot>br` bridge, `dlc<slot>v<i>` veths) and a slot file records the owning process,
 * so a later run removes what a crashed run left behind without touching a live one.
 *
 * Needs root and `ip` (iproute2); {@link networkSupport} says whether they are there.
 *
 * @module
 */

const slotDirectory = "/tmp/dlock-chaos-slots";
const slotsMax = 64;
const namePattern = /^dlc(\d+)(?:n\d+|br|v\d+)(?:@.*)?$/;

type CommandResult = { code: number; stdout: string; stderr: string };

async function run(command: string[], timeoutMs = 10_000): Promise<CommandResult> {
  const [program, ...args] = command;
  if (program === undefined) throw new Error("Cannot run an empty command");
  const output = await new Deno.Command(program, {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(timeoutMs),
  }).output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

async function runChecked(command: string[]): Promise<string> {
  const result = await run(command);
  if (result.code !== 0) {
    throw new Error(
      `Cannot set up the network lab as '${
        command.join(" ")
      }' failed (${result.code}): ${result.stderr.trim()}`,
    );
  }
  return result.stdout;
}

/** Whether namespaces can be used here, and if not, why. */
export type NetworkSupport = { available: true } | { available: false; reason: string };

/** Checks for Linux, root and a working `ip netns`. */
export async function networkSupport(): Promise<NetworkSupport> {
  if (Deno.build.os !== "linux") return { available: false, reason: "not Linux" };
  if (Deno.uid() !== 0) return { available: false, reason: "not running as root" };
  try {
    const result = await run(["ip", "netns", "list"]);
    if (result.code !== 0) {
      return { available: false, reason: `'ip netns list' failed: ${result.stderr.trim()}` };
    }
  } catch (error) {
    return { available: false, reason: `'ip' is not available (${String(error)})` };
  }
  return { available: true };
}

/** `pid starttime` of a process, or null when it does not exist. */
function processIdentity(pid: number): Promise<string | null> {
  return Promise.resolve(processIdentitySync(pid));
}

function processIdentitySync(pid: number): string | null {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return `${pid} ${fields[19] ?? "?"}`;
  } catch {
    return null;
  }
}

async function slotOwnerAlive(slot: number): Promise<boolean> {
  let text: string;
  try {
    text = (await Deno.readTextFile(`${slotDirectory}/slot-${slot}`)).trim();
  } catch {
    return false;
  }
  const pid = Number(text.split(" ")[0]);
  return Number.isSafeInteger(pid) && (await processIdentity(pid)) === text;
}

/** Runs `ip`, treating a missing binary as an empty answer (no namespaces to clean). */
async function runIp(args: string[]): Promise<CommandResult> {
  try {
    return await run(["ip", ...args]);
  } catch (error) {
    return { code: 127, stdout: "", stderr: String(error) };
  }
}

async function listNamespaces(): Promise<string[]> {
  const result = await runIp(["netns", "list"]);
  return result.stdout.split("\n").map((line) => line.split(" ")[0] ?? "").filter((n) => n !== "");
}

async function listLinks(): Promise<string[]> {
  const result = await runIp(["-o", "link", "show"]);
  return result.stdout.split("\n")
    .map((line) => (line.split(": ")[1] ?? "").split("@")[0] ?? "")
    .filter((name) => name !== "");
}

async function killNamespaceProcesses(namespace: string): Promise<void> {
  const result = await runIp(["netns", "pids", namespace]);
  for (const pid of result.stdout.split("\n").map(Number).filter((p) => p > 0)) {
    try {
      Deno.kill(pid, "SIGKILL");
    } catch {
      // Already gone.
    }
  }
}

/** Kills the processes recorded for a slot whose identity (pid and start time) still matches. */
async function killRecordedProcesses(slot: number): Promise<void> {
  let text = "";
  try {
    text = await Deno.readTextFile(`${slotDirectory}/slot-${slot}.pids`);
  } catch {
    return;
  }
  for (const identity of text.split("\n").filter((line) => line !== "")) {
    const pid = Number(identity.split(" ")[0]);
    if (!Number.isSafeInteger(pid) || (await processIdentity(pid)) !== identity) continue;
    try {
      Deno.kill(pid, "SIGKILL");
    } catch {
      // Gone meanwhile.
    }
  }
  await Deno.remove(`${slotDirectory}/slot-${slot}.pids`).catch(() => {});
}

async function removeSlot(slot: number, namespaces: string[], links: string[]): Promise<string[]> {
  const removed: string[] = [];
  await killRecordedProcesses(slot);
  for (const namespace of namespaces.filter((n) => slotOf(n) === slot)) {
    await killNamespaceProcesses(namespace);
    await runIp(["netns", "del", namespace]);
    removed.push(namespace);
  }
  for (const link of links.filter((l) => slotOf(l) === slot)) {
    await runIp(["link", "del", link]);
    removed.push(link);
  }
  await Deno.remove(`${slotDirectory}/slot-${slot}`).catch(() => {});
  return removed;
}

function slotOf(name: string): number | null {
  const match = namePattern.exec(name);
  return match === null ? null : Number(match[1]);
}

/**
 * Removes namespaces, bridges and veths of earlier runs whose owner process is gone (a
 * crashed or killed run), including processes still running inside those namespaces.
 * Returns the names removed.
 */
export async function removeLeftovers(): Promise<string[]> {
  const namespaces = await listNamespaces();
  const links = await listLinks();
  const slots = new Set<number>();
  for (const name of [...namespaces, ...links]) {
    const slot = slotOf(name);
    if (slot !== null) slots.add(slot);
  }
  // Loopback runs have no namespaces, only their slot files.
  try {
    for await (const entry of Deno.readDir(slotDirectory)) {
      const match = /^slot-(\d+)(?:\.pids)?$/.exec(entry.name);
      if (match !== null) slots.add(Number(match[1]));
    }
  } catch {
    // No slot directory yet.
  }
  const removed: string[] = [];
  for (const slot of slots) {
    if (!(await slotOwnerAlive(slot))) removed.push(...await removeSlot(slot, namespaces, links));
  }
  return removed;
}

async function claimSlot(): Promise<number> {
  await Deno.mkdir(slotDirectory, { recursive: true });
  const identity = await processIdentity(Deno.pid);
  for (let slot = 0; slot < slotsMax; slot += 1) {
    const path = `${slotDirectory}/slot-${slot}`;
    if (await slotOwnerAlive(slot)) continue;
    await Deno.remove(path).catch(() => {});
    try {
      await Deno.writeTextFile(path, `${identity}\n`, { createNew: true });
      return slot;
    } catch {
      // Another run took it between our check and our write; try the next one.
    }
  }
  throw new Error(`Cannot set up the network lab as all ${slotsMax} slots are in use`);
}

/**
 * A run's claim on a slot: the slot file names the harness process, and the processes the
 * run starts are recorded next to it, so that a later run can clean up after this one if
 * it crashes. Used with and without namespaces.
 */
export class RunSlot {
  readonly slot: number;
  #released = false;

  private constructor(slot: number) {
    this.slot = slot;
  }

  /** Removes leftovers of dead runs, then claims a free slot. */
  static async claim(): Promise<RunSlot> {
    await removeLeftovers();
    return new RunSlot(await claimSlot());
  }

  /** Records a process of this run (pid and start time) for crash cleanup. */
  recordProcess(pid: number): void {
    const identity = processIdentitySync(pid);
    if (identity === null || this.#released) return;
    Deno.writeTextFileSync(`${slotDirectory}/slot-${this.slot}.pids`, `${identity}\n`, {
      append: true,
    });
  }

  /** Kills recorded processes still alive, removes this slot's namespaces, links and files. */
  async release(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    await removeSlot(this.slot, await listNamespaces(), await listLinks());
  }
}

/** The lab: namespaces, addresses, partitions. Create with {@link NetworkLab.create}. */
export class NetworkLab {
  readonly slot: number;
  readonly serverCount: number;
  /** The root namespace's address on the lab bridge (filewriter and workers use it). */
  readonly hostAddress: string;
  readonly serverAddresses: readonly string[];
  readonly #blocked = new Set<string>();
  #tornDown = false;

  readonly #runSlot: RunSlot;

  private constructor(runSlot: RunSlot, serverCount: number) {
    this.#runSlot = runSlot;
    const slot = runSlot.slot;
    this.slot = slot;
    this.serverCount = serverCount;
    this.hostAddress = `10.231.${slot}.254`;
    this.serverAddresses = Array.from({ length: serverCount }, (_, i) => `10.231.${slot}.${i + 1}`);
  }

  /**
   * Builds the namespaces and bridge in the run's slot. On failure everything built so far
   * is removed again (and the slot released).
   */
  static async create(serverCount: number, runSlot: RunSlot): Promise<NetworkLab> {
    const lab = new NetworkLab(runSlot, serverCount);
    try {
      await lab.#build();
    } catch (error) {
      await lab.teardown();
      throw error;
    }
    return lab;
  }

  /** The namespace of server `index`. */
  namespace(index: number): string {
    return `dlc${this.slot}n${index}`;
  }

  get bridge(): string {
    return `dlc${this.slot}br`;
  }

  /** `command` prefixed so that it runs inside server `index`'s namespace. */
  wrap(index: number, command: readonly string[]): string[] {
    return ["ip", "netns", "exec", this.namespace(index), ...command];
  }

  async #build(): Promise<void> {
    await runChecked(["ip", "link", "add", this.bridge, "type", "bridge"]);
    await runChecked(["ip", "addr", "add", `${this.hostAddress}/24`, "dev", this.bridge]);
    await runChecked(["ip", "link", "set", this.bridge, "up"]);
    for (let index = 0; index < this.serverCount; index += 1) {
      const namespace = this.namespace(index);
      const hostSide = `dlc${this.slot}v${index}`;
      const inside = `dlc${this.slot}p${index}`;
      await runChecked(["ip", "netns", "add", namespace]);
      await runChecked(["ip", "link", "add", hostSide, "type", "veth", "peer", "name", inside]);
      await runChecked(["ip", "link", "set", inside, "netns", namespace]);
      await runChecked(["ip", "link", "set", hostSide, "master", this.bridge]);
      await runChecked(["ip", "link", "set", hostSide, "up"]);
      const address = this.serverAddresses[index] ?? "";
      await runChecked(["ip", "-n", namespace, "addr", "add", `${address}/24`, "dev", inside]);
      await runChecked(["ip", "-n", namespace, "link", "set", inside, "up"]);
      await runChecked(["ip", "-n", namespace, "link", "set", "lo", "up"]);
    }
  }

  /** Drops packets from server `from` to `address` (a route in `from`'s namespace). */
  async blockAddress(from: number, address: string): Promise<void> {
    const key = `${from} ${address}`;
    if (this.#blocked.has(key)) return;
    await runChecked([
      "ip",
      "-n",
      this.namespace(from),
      "route",
      "add",
      "blackhole",
      `${address}/32`,
    ]);
    this.#blocked.add(key);
  }

  /** Drops packets from server `from` to server `to` (one direction). */
  block(from: number, to: number): Promise<void> {
    return this.blockAddress(from, this.serverAddresses[to] ?? "");
  }

  /** Removes every route this lab added: the network is whole again. */
  async heal(): Promise<void> {
    for (const key of [...this.#blocked]) {
      const [from, address] = key.split(" ");
      await run([
        "ip",
        "-n",
        this.namespace(Number(from)),
        "route",
        "del",
        "blackhole",
        `${address}/32`,
      ]);
      this.#blocked.delete(key);
    }
  }

  /** The blocked pairs as `from->address`, for the output. */
  blockedPairs(): string[] {
    return [...this.#blocked].map((key) => key.replace(" ", "->"));
  }

  /** True when the kernel in `from`'s namespace routes `address` into a blackhole. */
  async routesToBlackhole(from: number, address: string): Promise<boolean> {
    const result = await run(["ip", "-n", this.namespace(from), "route", "get", address]);
    return result.code !== 0 || /blackhole/.test(result.stdout);
  }

  /**
   * Tries a TCP connection from inside server `from`'s namespace (bash's /dev/tcp, which
   * starts in milliseconds). True when it connected within `timeoutMs`.
   */
  async canConnect(
    from: number,
    address: string,
    port: number,
    timeoutMs = 1_500,
  ): Promise<boolean> {
    const seconds = (timeoutMs / 1000).toFixed(1);
    const result = await run(
      this.wrap(from, ["timeout", seconds, "bash", "-c", `exec 3<>/dev/tcp/${address}/${port}`]),
      timeoutMs + 5_000,
    );
    return result.code === 0;
  }

  /**
   * Proves that partitions cut traffic before the run relies on them: a listener in server
   * 1's namespace is reachable from server 0's; a route in 0 (one way) and a route in 1 (the
   * other way) each stop new connections; an established connection from the root
   * namespace stops carrying data when its peer's route is blackholed, and carries it again
   * after healing.
   * @throws {Error} when any step does not behave so.
   */
  async selfTest(): Promise<void> {
    if (this.serverCount < 2) return;
    const port = 7_790;
    const target = this.serverAddresses[1] ?? "";
    const probe = new URL("./probe.ts", import.meta.url).pathname;
    const listener = new Deno.Command("ip", {
      args: [
        "netns",
        "exec",
        this.namespace(1),
        Deno.execPath(),
        "run",
        "-A",
        probe,
        "listen",
        target,
        `${port}`,
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    try {
      await waitForLine(listener.stdout, "listening", 15_000);
      const expect = async (from: number, connects: boolean, step: string) => {
        const connected = await this.canConnect(from, target, port);
        if (connected !== connects) {
          throw new Error(
            `Cannot trust the network lab as ${step}: a connection from ${
              this.namespace(from)
            } to ${target}:${port} ${connected ? "succeeded" : "failed"}`,
          );
        }
      };
      await expect(0, true, "before any partition");
      await this.block(0, 1);
      if (!(await this.routesToBlackhole(0, target))) {
        throw new Error("Cannot trust the network lab as the blackhole route is not in effect");
      }
      await expect(0, false, "with 0 -/-> 1 blocked");
      await this.heal();
      await this.blockAddress(1, this.serverAddresses[0] ?? "");
      await expect(0, false, "with 1 -/-> 0 blocked (replies lost)");
      await this.heal();
      await expect(0, true, "after healing");
      await this.#testEstablishedConnection(target, port);
    } finally {
      await this.heal();
      try {
        listener.kill("SIGKILL");
      } catch {
        // Already gone.
      }
      await listener.status;
    }
  }

  async #testEstablishedConnection(target: string, port: number): Promise<void> {
    const connection = await Deno.connect({ hostname: target, port });
    try {
      const buffer = new Uint8Array(16);
      await connection.write(new Uint8Array([1]));
      if ((await withTimeout(connection.read(buffer), 3_000)) === timedOut) {
        throw new Error("Cannot trust the network lab as the echo probe does not answer");
      }
      await this.blockAddress(1, this.hostAddress);
      await connection.write(new Uint8Array([2]));
      const read = connection.read(buffer);
      if ((await withTimeout(read, 1_000)) !== timedOut) {
        throw new Error(
          "Cannot trust the network lab as an established connection still carried data " +
            "with the peer's route blackholed",
        );
      }
      await this.heal();
      if ((await withTimeout(read, 10_000)) === timedOut) {
        throw new Error(
          "Cannot trust the network lab as a connection did not recover after healing",
        );
      }
    } finally {
      connection.close();
    }
  }

  /** Removes the routes, the processes inside, the namespaces, the bridge and the slot. */
  async teardown(): Promise<void> {
    if (this.#tornDown) return;
    this.#tornDown = true;
    await this.#runSlot.release();
  }
}

async function waitForLine(
  stream: ReadableStream<Uint8Array>,
  expected: string,
  timeoutMs: number,
): Promise<void> {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  const timer = setTimeout(() => reader.cancel().catch(() => {}), timeoutMs);
  try {
    while (!text.includes(expected)) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`Cannot start the probe listener: it printed '${text.trim()}'`);
      text += value;
    }
  } finally {
    clearTimeout(timer);
    reader.releaseLock();
  }
}

const timedOut = Symbol("timed out");

/** Resolves with the promise's value, or {@link timedOut} after `timeoutMs`. */
async function withTimeout<T>(
  promise: Promise<T>,
  timeoutMs: number,
): Promise<T | typeof timedOut> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<typeof timedOut>((resolve) => {
    timer = setTimeout(() => resolve(timedOut), timeoutMs);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

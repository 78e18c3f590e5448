/**
 * Leader lookup for the harness, through a helper process (`status_helper.ts`) that does
 * the gRPC calls, so that an abort inside Deno's `node:http2` (seen in chaos runs when a
 * server closes connections) cannot take the harness down. A dead helper is restarted on
 * the next request; a request that gets no answer in time yields null ("unknown").
 *
 * @module
 */

const helperPath = new URL("./status_helper.ts", import.meta.url).pathname;

type Pending = { resolve: (leader: string | null) => void; timer: ReturnType<typeof setTimeout> };

/** Asks the cluster who leads. One instance per run; {@link StatusProbe.close} at the end. */
export class StatusProbe {
  #child: Deno.ChildProcess | null = null;
  #writer: WritableStreamDefaultWriter<Uint8Array> | null = null;
  #nextId = 0;
  readonly #pending = new Map<number, Pending>();
  readonly #encoder = new TextEncoder();
  /** How many times the helper process had to be (re)started. */
  starts = 0;

  #ensureHelper(): WritableStreamDefaultWriter<Uint8Array> {
    if (this.#child !== null && this.#writer !== null) return this.#writer;
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", helperPath],
      stdin: "piped",
      stdout: "piped",
      stderr: "null",
    }).spawn();
    this.#child = child;
    this.#writer = child.stdin.getWriter();
    this.starts += 1;
    this.#readReplies(child);
    child.status.then(() => {
      if (this.#child !== child) return;
      this.#child = null;
      this.#writer = null;
    });
    return this.#writer;
  }

  async #readReplies(child: Deno.ChildProcess): Promise<void> {
    let buffer = "";
    try {
      for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
        buffer += chunk;
        let newline = buffer.indexOf("\n");
        while (newline >= 0) {
          const line = buffer.slice(0, newline);
          buffer = buffer.slice(newline + 1);
          newline = buffer.indexOf("\n");
          const reply = JSON.parse(line) as { id: number; leader: string | null };
          this.#settle(reply.id, reply.leader);
        }
      }
    } catch {
      // The helper died mid-line; pending requests time out.
    }
  }

  #settle(id: number, leader: string | null): void {
    const pending = this.#pending.get(id);
    if (pending === undefined) return;
    this.#pending.delete(id);
    clearTimeout(pending.timer);
    pending.resolve(leader);
  }

  /**
   * The server that claims leadership with the highest term, or null when none does or no
   * answer came within `timeoutMs` (plus a second for the helper).
   */
  leader(addresses: readonly string[], timeoutMs = 1_000): Promise<string | null> {
    const id = ++this.#nextId;
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.#settle(id, null), timeoutMs + 1_000);
      this.#pending.set(id, { resolve, timer });
      let writer: WritableStreamDefaultWriter<Uint8Array>;
      try {
        writer = this.#ensureHelper();
      } catch {
        this.#settle(id, null);
        return;
      }
      const line = JSON.stringify({ id, addresses, timeoutMs }) + "\n";
      writer.write(this.#encoder.encode(line)).catch(() => {
        this.#child = null;
        this.#writer = null;
        this.#settle(id, null);
      });
    });
  }

  /** Stops the helper and answers pending requests with null. */
  async close(): Promise<void> {
    for (const id of [...this.#pending.keys()]) this.#settle(id, null);
    const child = this.#child;
    this.#child = null;
    this.#writer = null;
    if (child === null) return;
    try {
      child.kill("SIGKILL");
    } catch {
      // Already gone.
    }
    await child.status;
  }
}

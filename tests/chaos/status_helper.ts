/**
 * A helper process that asks servers who leads (`Status` over the native protocol of
 * src/client, no HTTP/2), without opening a session. It answers one JSON line
 * `{"id":1,"leader":"host:port"|null}` per request line
 * `{"id":1,"addresses":["host:port",...],"timeoutMs":500}` on stdin.
 *
 * It is a separate process so that nothing in it can take the harness down (it used gRPC
 * once, and Deno 2.9.6 can abort a process inside `node:http2` on a GOAWAY; it now uses
 * the native protocol, which also never makes a server process a GOAWAY); `status.ts`
 * restarts it if it dies.
 *
 * @module
 */
import { fetchStatus } from "../../src/client/mod.ts";

/** The parts of `dlock.v1.StatusResponse` the harness reads. */
export type ServerStatus = {
  self: string;
  role: string;
  leader: string;
  term: number;
  commitIndex: number;
};

/** Asks servers for their own view over the native protocol (no HTTP/2, so no GOAWAY). */
class StatusProbe {
  /** Status of one server, or null when it does not answer within `timeoutMs`. */
  async status(address: string, timeoutMs = 1_000): Promise<ServerStatus | null> {
    try {
      const status = await fetchStatus([address], { timeoutMs, locksLimit: 1 });
      return {
        self: status.self,
        role: status.role,
        leader: status.leader,
        term: status.term,
        commitIndex: status.commitIndex,
      };
    } catch {
      return null;
    }
  }

  /**
   * The leader the servers agree on right now: among servers answering with role leader,
   * the one with the highest term. Null when no server claims to lead.
   */
  async leader(addresses: readonly string[], timeoutMs = 1_000): Promise<string | null> {
    const statuses = await Promise.all(addresses.map((a) => this.status(a, timeoutMs)));
    let best: ServerStatus | null = null;
    statuses.forEach((status, index) => {
      if (status === null || status.role.toLowerCase() !== "leader") return;
      const self = status.self !== "" ? status.self : addresses[index] ?? "";
      if (best === null || status.term > best.term) best = { ...status, self };
    });
    return (best as ServerStatus | null)?.self ?? null;
  }

  /** Nothing to close: every probe uses its own short-lived native connection. */
  close(): void {}
}

if (import.meta.main) {
  const probe = new StatusProbe();
  const encoder = new TextEncoder();
  const lines = Deno.stdin.readable.pipeThrough(new TextDecoderStream());
  let buffer = "";
  for await (const chunk of lines) {
    buffer += chunk;
    let newline = buffer.indexOf("\n");
    while (newline >= 0) {
      const line = buffer.slice(0, newline);
      buffer = buffer.slice(newline + 1);
      newline = buffer.indexOf("\n");
      if (line.trim() === "") continue;
      const request = JSON.parse(line) as { id: number; addresses: string[]; timeoutMs: number };
      probe.leader(request.addresses, request.timeoutMs).then((leader) => {
        const reply = JSON.stringify({ id: request.id, leader }) + "\n";
        Deno.stdout.writeSync(encoder.encode(reply));
      });
    }
  }
  probe.close();
  Deno.exit(0);
}

/**
 * {@link Transport} over plain TCP: each server listens on its peer port and dials one
 * connection to every peer; both carry length-prefixed frames, each frame one
 * `dlock.v1.RaftBatch` of `proto/dlock/v1/peer.proto` (4-byte big-endian length, then the
 * protobuf bytes). Messages queued for a peer during one turn of the event loop go out
 * in one write.
 *
 * Why not gRPC: with Deno 2.9.6, HTTP/2 sessions abort the whole process inside
 * nghttp2 (`find_stream_on_goaway_func: Assertion stream->closed_next == NULL`) when a
 * peer connection ends while other HTTP/2 sessions of the process are busy; killing a
 * leader under client load reproduced it in 2 of 4 runs. Peer links therefore use no
 * HTTP/2 at all; gRPC stays for the client API. (GrpcTransport remains for comparison.)
 *
 * Delivery is best effort, as Raft expects: while a peer is unreachable the link
 * retries with capped exponential backoff and drops what is sent meanwhile; the queue
 * of a slow peer is bounded.
 *
 * Stalled links: a connection whose packets were dropped for a while (a network
 * partition) is in TCP's retransmission backoff when the network heals, and may carry
 * nothing for as long again: after a 7 s partition up to ~6 s more, after a minute up to
 * two. A chaos run showed a 3-server cluster without a leader for 3.5 s that way: the one
 * link the two remaining servers needed to elect one was still backing off from an
 * earlier partition. So the receiving side acknowledges what it reads with one byte back
 * on the same connection (at most every `ackIntervalMs`), and a link whose writes have
 * gone unacknowledged for `stallMs` closes the connection and dials a new one, which
 * carries data at once. A link that never got an acknowledgement on a connection (a peer
 * of an older version, which sends none) is never judged stalled.
 *
 * The peer port of a member `host:port` is `port + peerPortOffset` (default 10000;
 * `port - offset` when that would exceed 65535), the same rule on every server.
 *
 * @module
 */
import { limits } from "../limits.ts";
import type { Logger } from "../log.ts";
import type { Message, NodeId } from "../raft/types.ts";
import { DecodeError, decodeMessage, type WireMessage } from "./codec.ts";
import { concat, encodeFrames, type WireBatch } from "./_frames.ts";
import { FrameReader, joinFrames, writeAll } from "./length_prefixed.ts";
import { LogLimiter } from "./log_limiter.ts";
import { loadService } from "./proto.ts";
import type { ReceiveHandler, Transport } from "./types.ts";

/** At most one acknowledgement byte per this many ms per inbound connection. */
const ackIntervalMs = 100;
const ackByte = new Uint8Array([0]);

/** Default `stallMs`: an outbound link unacknowledged this long is dialed anew. */
export const stallMsDefault = 1_000;

/** Default distance between a member's client port and its peer port. */
export const peerPortOffsetDefault = 10_000;

/** The peer address (`hostname`, `port`) of member `address` (`host:port`). */
export function peerAddressOf(
  address: string,
  offset: number = peerPortOffsetDefault,
): { hostname: string; port: number } {
  const separator = address.lastIndexOf(":");
  const host = address.slice(0, separator);
  const port = Number(address.slice(separator + 1));
  const hostname = host.startsWith("[") ? host.slice(1, -1) : host;
  return {
    hostname: hostname === "localhost" ? "127.0.0.1" : hostname,
    port: peerPortOf(port, offset),
  };
}

/**
 * Why these members cannot use peer port offset `offset`, or null when they can: a
 * member's peer port must be in 1..65535 and differ, on the same host, from every
 * member's client port and every other member's peer port (else a server cannot bind,
 * or a client port receives Raft frames).
 */
export function peerPortConflict(members: readonly string[], offset: number): string | null {
  const taken = new Map<string, string>();
  for (const member of members) {
    const client = peerAddressOf(member, 0);
    taken.set(`${client.hostname} ${client.port}`, `the client port of ${member}`);
  }
  for (const member of members) {
    const peer = peerAddressOf(member, offset);
    if (!Number.isInteger(peer.port) || peer.port < 1 || peer.port > 65_535) {
      return `the peer port of ${member} would be ${peer.port}, out of range 1..65535`;
    }
    const key = `${peer.hostname} ${peer.port}`;
    const owner = taken.get(key);
    if (owner !== undefined) {
      return `the peer port of ${member} would be ${peer.port}, which is also ${owner}`;
    }
    taken.set(key, `the peer port of ${member}`);
  }
  return null;
}

/** The peer port of a member whose client port is `port` (`offset` below, above 65535). */
export function peerPortOf(port: number, offset: number = peerPortOffsetDefault): number {
  return port + offset <= 65_535 ? port + offset : port - offset;
}

/**
 * `count` ports on `hostname` for members started there with the default peer port
 * offset (tests, benchmarks): each free together with its peer port, and none equal to
 * another's peer port. They are bound and released at once, so another process may
 * still take one before it is used.
 * @throws {Error} when 50 tries per port find no such set.
 */
export function freeServerPorts(count: number, hostname = "127.0.0.1"): number[] {
  const taken = new Set<number>();
  const ports: number[] = [];
  for (let attempt = 0; ports.length < count && attempt < 50 * count; attempt++) {
    const listener = Deno.listen({ hostname, port: 0 });
    const port = (listener.addr as Deno.NetAddr).port;
    const peerPort = peerPortOf(port);
    try {
      if (taken.has(port) || taken.has(peerPort)) continue;
      Deno.listen({ hostname, port: peerPort }).close();
      ports.push(port);
      taken.add(port).add(peerPort);
    } catch {
      // The peer port is in use: try another.
    } finally {
      listener.close();
    }
  }
  if (ports.length < count) {
    throw new Error(`Cannot find ${count} free port pairs (port and peer port) on ${hostname}`);
  }
  return ports;
}

/** Options of {@link TcpTransport}. */
export interface TcpTransportOptions {
  readonly self: NodeId;
  readonly peers: readonly NodeId[];
  readonly clusterId: string;
  readonly logger: Logger;
  readonly peerPortOffset?: number;
  /** Bytes waiting for one peer before new messages are dropped. */
  readonly queueBytesMax?: number;
  readonly reconnectDelayMsMin?: number;
  readonly reconnectDelayMsMax?: number;
  readonly snapshotChunkBytes?: number;
  /**
   * A connection to a peer whose writes got no acknowledgement for this long is closed
   * and dialed anew (default {@link stallMsDefault}; see the module documentation).
   */
  readonly stallMs?: number;
}

type Serialize = (batch: WireBatch) => Uint8Array;
type Deserialize = (bytes: Uint8Array) => WireBatch;

/** Raft messages over TCP; see the module documentation. */
export class TcpTransport implements Transport {
  readonly #options: TcpTransportOptions;
  readonly #listener: Deno.TcpListener;
  readonly #links = new Map<NodeId, PeerLink>();
  /** Refused peers of another cluster (they redial all the time): logged once in a while. */
  readonly #refusals = new LogLimiter();
  readonly #serialize: Serialize;
  readonly #deserialize: Deserialize;
  readonly #inbound = new Set<Deno.TcpConn>();
  #handler: ReceiveHandler = () => {};
  #closed = false;
  #flushScheduled = false;

  /**
   * Binds the peer port and starts dialing the peers.
   * @throws {Deno.errors.AddrInUse} when the peer port is taken.
   */
  constructor(options: TcpTransportOptions) {
    this.#options = options;
    const method = loadService("peer.proto", "Peer")["Send"];
    if (method === undefined) throw new Error("Cannot start the transport: Peer/Send missing");
    this.#serialize = method.requestSerialize as Serialize;
    this.#deserialize = (bytes) =>
      method.requestDeserialize(bytes as unknown as Buffer) as WireBatch;
    const own = peerAddressOf(options.self, options.peerPortOffset);
    this.#listener = Deno.listen({ hostname: own.hostname, port: own.port });
    this.#accept();
    for (const peer of options.peers) {
      if (peer === options.self) continue;
      this.#links.set(
        peer,
        new PeerLink(peer, peerAddressOf(peer, options.peerPortOffset), options),
      );
    }
  }

  /** The bound peer port. */
  get port(): number {
    return this.#listener.addr.port;
  }

  send(messages: readonly Message[]): void {
    if (this.#closed) return;
    for (const message of messages) {
      const link = this.#links.get(message.to);
      if (link === undefined) {
        this.#options.logger.warn("dropping message to an unknown peer", { to: message.to });
        continue;
      }
      link.queue.push(message);
    }
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      queueMicrotask(() => this.#flush());
    }
  }

  onReceive(handler: ReceiveHandler): void {
    this.#handler = handler;
  }

  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    try {
      this.#listener.close();
    } catch {
      // Already closed.
    }
    for (const conn of this.#inbound) closeQuietly(conn);
    this.#inbound.clear();
    for (const link of this.#links.values()) link.close();
    return Promise.resolve();
  }

  /** Counters per peer (tests, status). */
  stats(): Record<NodeId, { sentMessages: number; droppedMessages: number; connected: boolean }> {
    const result: Record<
      NodeId,
      { sentMessages: number; droppedMessages: number; connected: boolean }
    > = {};
    for (const [peer, link] of this.#links) {
      result[peer] = {
        sentMessages: link.sentMessages,
        droppedMessages: link.droppedMessages,
        connected: link.connected,
      };
    }
    return result;
  }

  #flush(): void {
    this.#flushScheduled = false;
    if (this.#closed) return;
    for (const link of this.#links.values()) {
      const messages = link.queue;
      if (messages.length === 0) continue;
      link.queue = [];
      if (!link.connected) {
        link.droppedMessages += messages.length;
        continue;
      }
      const frames = encodeFrames(
        messages,
        this.#options.clusterId,
        this.#options.self,
        this.#serialize,
        this.#options.snapshotChunkBytes ?? 1024 * 1024,
      );
      link.write(frames, messages.length);
    }
  }

  async #accept(): Promise<void> {
    try {
      for await (const conn of this.#listener) {
        if (this.#closed) {
          closeQuietly(conn);
          break;
        }
        conn.setNoDelay(true);
        this.#inbound.add(conn);
        this.#read(conn).finally(() => {
          this.#inbound.delete(conn);
          closeQuietly(conn);
        });
      }
    } catch (error) {
      if (!this.#closed) {
        this.#options.logger.error("the peer listener failed", { error: String(error) });
      }
    }
  }

  /** Reads frames from one inbound connection until it ends or misbehaves. */
  async #read(conn: Deno.TcpConn): Promise<void> {
    // Any read error, an oversized frame included, ends the connection (caught below).
    const acknowledger = new Acknowledger(conn);
    const reader = new FrameReader({
      read: async (buffer) => {
        const read = await conn.read(buffer);
        if (read !== null && read > 0) acknowledger.received();
        return read;
      },
    }, limits.messageBytesMax);
    try {
      await this.#readFrames(reader);
    } finally {
      acknowledger.close();
    }
  }

  /**
   * Logs a refused peer of another cluster, once per peer and cluster id every
   * 10 s ({@link LogLimiter}; the peer redials all the time), with the count of the
   * refusals in between.
   */
  #logRefusal(batch: WireBatch): void {
    const due = this.#refusals.due(`${batch.from} ${batch.cluster_id}`);
    if (due === null) return;
    this.#options.logger.error(
      "refusing peer messages of another cluster: every server must be started with the same " +
        "member addresses, written the same way (localhost and 127.0.0.1 differ)",
      {
        from: batch.from,
        theirClusterId: batch.cluster_id,
        ourClusterId: this.#options.clusterId,
        refusedSinceLastLog: due.suppressed,
      },
    );
  }

  /** Reads frames until the connection ends or misbehaves, handing their messages on. */
  async #readFrames(reader: FrameReader): Promise<void> {
    let pending: { wire: WireMessage; parts: Uint8Array[]; received: number } | null = null;
    for (;;) {
      const frame = await reader.next().catch(() => null);
      if (frame === null || this.#closed) return;
      let batch: WireBatch;
      try {
        batch = this.#deserialize(frame);
      } catch (error) {
        this.#options.logger.warn("closing a peer connection that sent an undecodable frame", {
          error: String(error),
        });
        return;
      }
      if (batch.cluster_id !== this.#options.clusterId) {
        this.#logRefusal(batch);
        return;
      }
      const decoded: Message[] = [];
      try {
        for (const wire of batch.messages ?? []) {
          if (wire.snapshot_chunked === true) pending = { wire, parts: [], received: 0 };
          else decoded.push(decodeMessage(wire));
        }
        const chunk = batch.snapshot_chunk;
        if (chunk !== undefined && chunk !== null && pending !== null) {
          const data = chunk.data ?? new Uint8Array(0);
          if ((chunk.offset ?? 0) !== pending.received) {
            pending = null; // A chunk was lost; Raft sends the snapshot again.
          } else {
            pending.parts.push(new Uint8Array(data));
            pending.received += data.byteLength;
            const total = chunk.total_bytes ?? 0;
            if (pending.received >= total) {
              decoded.push(decodeMessage(pending.wire, concat(pending.parts, total)));
              pending = null;
            }
          }
        }
      } catch (error) {
        if (!(error instanceof DecodeError)) throw error;
        this.#options.logger.warn("dropping an undecodable peer message", {
          from: batch.from,
          error: error.message,
        });
      }
      if (decoded.length > 0) this.#handler(decoded);
    }
  }
}

/**
 * Acknowledges, on an inbound peer connection, that bytes arrived: one byte back, at
 * most every `ackIntervalMs` (a later one when bytes arrive sooner), so the sending link
 * can tell a connection that carries data from one that stalled.
 */
class Acknowledger {
  #lastMs = Number.NEGATIVE_INFINITY;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #writing = false;
  #closed = false;

  constructor(readonly conn: Deno.TcpConn) {}

  received(): void {
    if (this.#closed || this.#timer !== undefined) return;
    const waitMs = this.#lastMs + ackIntervalMs - performance.now();
    if (waitMs <= 0) {
      this.#send();
      return;
    }
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#send();
    }, waitMs);
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
  }

  #send(): void {
    // A write still in flight (the way back is congested) already says as much.
    if (this.#closed || this.#writing) return;
    this.#lastMs = performance.now();
    this.#writing = true;
    this.conn.write(ackByte).then(
      () => this.#writing = false,
      () => this.#writing = false, // The connection ended: the reader notices.
    );
  }
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}

/** The outbound connection to one peer: connect with backoff, write queued frames in order. */
class PeerLink {
  queue: Message[] = [];
  connected = false;
  sentMessages = 0;
  droppedMessages = 0;
  #conn: Deno.TcpConn | null = null;
  #pendingFrames: Uint8Array[] = [];
  #pendingBytes = 0;
  #writing = false;
  #closed = false;
  /** The peer acknowledged something on the current connection (see the module doc). */
  #acknowledged = false;
  /** When the oldest write not acknowledged since was made (performance.now()), or null. */
  #unacknowledgedSinceMs: number | null = null;
  /** Aborts the connect in progress, if any. */
  #attempt: AbortController | null = null;
  #delayMs: number;
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    readonly peer: NodeId,
    readonly address: { hostname: string; port: number },
    readonly options: TcpTransportOptions,
  ) {
    this.#delayMs = options.reconnectDelayMsMin ?? 50;
    this.#connect();
  }

  write(frames: Uint8Array[], messages: number): void {
    if (this.#stalled()) {
      this.droppedMessages += messages;
      return;
    }
    const limit = this.options.queueBytesMax ?? 16 * 1024 * 1024;
    let bytes = 0;
    for (const frame of frames) bytes += frame.byteLength + 4;
    if (this.#pendingBytes + bytes > limit) {
      this.droppedMessages += messages;
      return;
    }
    for (const frame of frames) this.#pendingFrames.push(frame);
    this.#pendingBytes += bytes;
    this.sentMessages += messages;
    if (!this.#writing) this.#drain();
  }

  /**
   * Whether the connection stopped carrying data (writes unacknowledged for `stallMs`
   * while the peer acknowledged earlier ones); if so, drops it and dials anew.
   */
  #stalled(): boolean {
    const conn = this.#conn;
    const since = this.#unacknowledgedSinceMs;
    if (conn === null || !this.#acknowledged || since === null) return false;
    const stalledMs = performance.now() - since;
    if (stalledMs < (this.options.stallMs ?? stallMsDefault)) return false;
    this.options.logger.info("redialing a peer whose connection stopped carrying data", {
      peer: this.peer,
      unacknowledgedMs: Math.round(stalledMs),
    });
    this.#lost(conn);
    return true;
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#attempt?.abort();
    if (this.#conn !== null) closeQuietly(this.#conn);
    this.#conn = null;
    this.connected = false;
  }

  async #connect(): Promise<void> {
    if (this.#closed) return;
    try {
      // A connect whose SYNs are lost backs off too (seconds): give up and retry instead.
      const attempt = new AbortController();
      const timer = setTimeout(() => attempt.abort(), this.options.stallMs ?? stallMsDefault);
      this.#attempt = attempt;
      const conn = await Deno.connect({
        hostname: this.address.hostname,
        port: this.address.port,
        signal: attempt.signal,
      }).finally(() => {
        clearTimeout(timer);
        this.#attempt = null;
      });
      if (this.#closed) {
        closeQuietly(conn);
        return;
      }
      conn.setNoDelay(true);
      this.#conn = conn;
      this.connected = true;
      this.#acknowledged = false;
      this.#unacknowledgedSinceMs = null;
      this.#delayMs = this.options.reconnectDelayMsMin ?? 50;
      this.options.logger.debug("peer connected", { peer: this.peer });
      // Reads the peer's acknowledgements, and notices it closing the connection.
      this.#watch(conn);
    } catch {
      this.#retry();
    }
  }

  async #watch(conn: Deno.TcpConn): Promise<void> {
    const buffer = new Uint8Array(256);
    try {
      while ((await conn.read(buffer)) !== null) {
        // The peer sends only acknowledgements on this connection.
        if (this.#conn !== conn) continue;
        this.#acknowledged = true;
        this.#unacknowledgedSinceMs = null;
      }
    } catch {
      // Reset.
    }
    this.#lost(conn);
  }

  #lost(conn: Deno.TcpConn): void {
    if (this.#conn !== conn) return;
    closeQuietly(conn);
    this.#conn = null;
    this.connected = false;
    this.#pendingFrames = [];
    this.#pendingBytes = 0;
    this.options.logger.debug("peer disconnected", { peer: this.peer });
    this.#retry();
  }

  #retry(): void {
    if (this.#closed) return;
    const delayMs = this.#delayMs;
    this.#delayMs = Math.min(this.#delayMs * 2, this.options.reconnectDelayMsMax ?? 1000);
    this.#timer = setTimeout(() => this.#connect(), delayMs);
  }

  /** Writes pending frames, all of them in one buffer per write call. */
  async #drain(): Promise<void> {
    this.#writing = true;
    try {
      while (this.#pendingFrames.length > 0 && this.#conn !== null) {
        const conn = this.#conn;
        const frames = this.#pendingFrames;
        this.#pendingFrames = [];
        this.#pendingBytes = 0;
        this.#unacknowledgedSinceMs ??= performance.now();
        try {
          await writeAll(conn, joinFrames(frames));
        } catch {
          this.#lost(conn);
        }
      }
    } finally {
      this.#writing = false;
    }
  }
}

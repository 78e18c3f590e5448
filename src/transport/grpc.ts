/**
 * {@link Transport} over gRPC: one long-lived client stream (`dlock.v1.Peer/Send`) per
 * peer, carrying batches of Raft messages. NOT used by the server: with Deno 2.9.6 its
 * HTTP/2 sessions can abort the process (see tcp.ts); kept, tested, for when that is
 * fixed and for comparison. This isolate serves the inbound streams and
 * encodes outbound batches; the outbound connections live in a worker
 * (`_peer_worker.ts` says why). Messages queued for a peer during one turn
 * of the event loop go out as one batch (one frame). While a peer is unreachable the
 * link waits with capped exponential backoff and drops what is sent meanwhile: Raft
 * retransmits, so queueing for a dead peer would only cost memory and deliver stale
 * messages. The queue of a live but slow peer is bounded too.
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import type { Logger } from "../log.ts";
import type { Message, NodeId } from "../raft/types.ts";
import { DecodeError, decodeMessage, type WireMessage } from "./codec.ts";
import { concat, encodeFrames, type WireBatch } from "./_frames.ts";
import { LogLimiter } from "./log_limiter.ts";
import { loadService } from "./proto.ts";
import type { ReceiveHandler, Transport } from "./types.ts";
import type { WorkerEvent, WorkerRequest } from "./_peer_worker.ts";

/** Options of {@link GrpcTransport}. */
export interface GrpcTransportOptions {
  readonly self: NodeId;
  /** The other members (their peer addresses, `host:port`). */
  readonly peers: readonly NodeId[];
  /** Batches carrying another cluster id are refused. */
  readonly clusterId: string;
  /** The server on which the Peer service is registered (its owner binds and starts it). */
  readonly server: grpc.Server;
  readonly logger: Logger;
  /** Messages waiting for one peer before new ones are dropped. */
  readonly queueMessagesMax?: number;
  readonly reconnectDelayMsMin?: number;
  readonly reconnectDelayMsMax?: number;
  /** Snapshot data larger than this travels in chunks of this size. */
  readonly snapshotChunkBytes?: number;
}

/** Raft messages over gRPC client streams; see the module documentation. */
export class GrpcTransport implements Transport {
  readonly #queues = new Map<NodeId, PeerQueue>();
  readonly #worker: Worker;
  readonly #serialize: (batch: WireBatch) => Uint8Array;
  #flushScheduled = false;
  readonly #options: GrpcTransportOptions;
  #handler: ReceiveHandler = () => {};
  #closed = false;
  /** Peers that refused our stream as UNIMPLEMENTED: logged once in a while. */
  readonly #refusals = new LogLimiter();

  constructor(options: GrpcTransportOptions) {
    this.#options = options;
    const service = loadService("peer.proto", "Peer");
    options.server.addService(service, {
      Send: (
        call: grpc.ServerReadableStream<WireBatch, unknown>,
        callback: grpc.sendUnaryData<unknown>,
      ) => this.#serve(call, callback),
    });
    const method = service["Send"];
    if (method === undefined) throw new Error("Cannot start the transport: Peer/Send missing");
    this.#serialize = method.requestSerialize as (batch: WireBatch) => Uint8Array;
    const peers = options.peers.filter((peer) => peer !== options.self);
    for (const peer of peers) this.#queues.set(peer, new PeerQueue());
    this.#worker = new Worker(new URL("./_peer_worker.ts", import.meta.url), { type: "module" });
    this.#worker.onmessage = (event: MessageEvent<WorkerEvent>) => this.#onWorkerEvent(event.data);
    this.#worker.onerror = (event) => {
      event.preventDefault();
      options.logger.error("the peer connection worker failed", { error: event.message });
    };
    this.#post({
      type: "init",
      path: method.path,
      peers,
      reconnectDelayMsMin: options.reconnectDelayMsMin ?? 50,
      reconnectDelayMsMax: options.reconnectDelayMsMax ?? 1000,
      queueFramesMax: options.queueMessagesMax ?? 4096,
    });
  }

  #post(request: WorkerRequest, transfer: Transferable[] = []): void {
    this.#worker.postMessage(request, transfer);
  }

  #onWorkerEvent(event: WorkerEvent): void {
    if (event.type === "refused") {
      const due = this.#refusals.due(event.peer);
      if (due === null) return;
      this.#options.logger.error(
        `the peer at ${event.peer} uses a different --peer-transport than this server: it ` +
          "does not take Raft messages over gRPC (UNIMPLEMENTED), this server sends them so " +
          "(--peer-transport grpc); every server must use the same",
        { peer: event.peer, details: event.details, refusedSinceLastLog: due.suppressed },
      );
      return;
    }
    const queue = this.#queues.get(event.peer);
    if (queue === undefined) return;
    queue.connected = event.connected;
    this.#options.logger.debug(event.connected ? "peer connected" : "peer disconnected", {
      peer: event.peer,
    });
  }

  /**
   * Encodes what was queued for every peer during this turn and hands it to the worker
   * in ONE message (each message to the worker costs a wake-up syscall).
   */
  #flushAll(): void {
    this.#flushScheduled = false;
    if (this.#closed) return;
    const sends: { peer: NodeId; frames: Uint8Array[] }[] = [];
    const transfer: ArrayBuffer[] = [];
    for (const [peer, queue] of this.#queues) {
      const messages = queue.messages;
      if (messages.length === 0) continue;
      queue.messages = [];
      if (queue.connected === false) {
        queue.droppedMessages += messages.length;
        continue;
      }
      const frames = encodeFrames(
        messages,
        this.#options.clusterId,
        this.#options.self,
        this.#serialize,
        this.#options.snapshotChunkBytes ?? 256 * 1024,
        true,
      );
      queue.sentMessages += messages.length;
      sends.push({ peer, frames });
      for (const frame of frames) transfer.push(frame.buffer as ArrayBuffer);
    }
    if (sends.length > 0) this.#post({ type: "send", sends }, transfer);
  }

  send(messages: readonly Message[]): void {
    if (this.#closed) return;
    const queueMessagesMax = this.#options.queueMessagesMax ?? 4096;
    for (const message of messages) {
      const queue = this.#queues.get(message.to);
      if (queue === undefined) {
        this.#options.logger.warn("dropping message to an unknown peer", { to: message.to });
        continue;
      }
      if (queue.messages.length >= queueMessagesMax) {
        queue.droppedMessages++;
        continue;
      }
      queue.messages.push(message);
    }
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      queueMicrotask(() => this.#flushAll());
    }
  }

  onReceive(handler: ReceiveHandler): void {
    this.#handler = handler;
  }

  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    // Terminate rather than close gracefully: see _peer_worker.ts on GOAWAY.
    this.#worker.terminate();
    return Promise.resolve();
  }

  /** Counters per peer (tests, status). */
  stats(): Record<NodeId, { sentMessages: number; droppedMessages: number; connected: boolean }> {
    const result: Record<
      NodeId,
      { sentMessages: number; droppedMessages: number; connected: boolean }
    > = {};
    for (const [peer, queue] of this.#queues) {
      result[peer] = {
        sentMessages: queue.sentMessages,
        droppedMessages: queue.droppedMessages,
        connected: queue.connected === true,
      };
    }
    return result;
  }

  #serve(
    call: grpc.ServerReadableStream<WireBatch, unknown>,
    callback: grpc.sendUnaryData<unknown>,
  ): void {
    if (this.#closed) {
      callback({ code: grpc.status.UNAVAILABLE, details: "server is shutting down" });
      return;
    }
    // Headers now, so the sender knows the stream is up (and resets its backoff).
    call.sendMetadata(new grpc.Metadata());
    let pending:
      | { wire: WireMessage; parts: Uint8Array[]; received: number; total: number }
      | null = null;
    let finished = false;
    const finish = (error: grpc.ServiceError | null) => {
      if (finished) return;
      finished = true;
      if (error === null) callback(null, {});
      else callback(error);
    };
    call.on("data", (batch: WireBatch) => {
      if (finished || this.#closed) return;
      if (batch.cluster_id !== this.#options.clusterId) {
        this.#options.logger.error("refusing peer messages of another cluster", {
          from: batch.from,
          theirClusterId: batch.cluster_id,
          ourClusterId: this.#options.clusterId,
        });
        const error = new Error(
          `Cannot accept peer messages as they belong to cluster ${batch.cluster_id}, ` +
            `this server to ${this.#options.clusterId} (are the member lists the same?)`,
        );
        finish(Object.assign(error, {
          code: grpc.status.FAILED_PRECONDITION,
          details: error.message,
          metadata: new grpc.Metadata(),
        }));
        return;
      }
      const decoded: Message[] = [];
      try {
        for (const wire of batch.messages ?? []) {
          if (wire.snapshot_chunked === true) {
            pending = { wire, parts: [], received: 0, total: -1 };
          } else {
            decoded.push(decodeMessage(wire));
          }
        }
        const chunk = batch.snapshot_chunk;
        if (chunk !== undefined && chunk !== null && pending !== null) {
          const offset = chunk.offset ?? 0;
          const data = chunk.data ?? new Uint8Array(0);
          if (offset !== pending.received) {
            pending = null; // A chunk was lost; Raft will send the snapshot again.
          } else {
            pending.total = chunk.total_bytes ?? 0;
            pending.parts.push(new Uint8Array(data));
            pending.received += data.byteLength;
            if (pending.received >= pending.total) {
              decoded.push(decodeMessage(pending.wire, concat(pending.parts, pending.total)));
              pending = null;
            }
          }
        }
      } catch (error) {
        if (!(error instanceof DecodeError)) throw error;
        this.#options.logger.warn("dropping undecodable peer message", {
          from: batch.from,
          error: error.message,
        });
      }
      if (decoded.length > 0) this.#handler(decoded);
    });
    call.on("end", () => finish(null));
    call.on("error", () => finish(null));
    call.on("cancelled", () => finish(null));
  }
}

/** Outbound queue of one peer; flushed once per turn of the event loop. */
class PeerQueue {
  messages: Message[] = [];
  /** Null until the worker reported the first connection state. */
  connected: boolean | null = null;
  sentMessages = 0;
  droppedMessages = 0;
}

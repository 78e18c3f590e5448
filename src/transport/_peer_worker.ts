/**
 * The outbound half of the gRPC transport, run in a Web Worker (private to
 * src/transport/).
 *
 * Why a worker: with Deno 2.9.6, a process whose one isolate holds both inbound
 * (server) and outbound (client) HTTP/2 streams aborts inside nghttp2 when a client
 * closes its connection (`find_stream_on_goaway_func: Assertion stream->closed_next ==
 * NULL failed`, denoland/deno#36788 family). Reproduced with a minimal grpc-js server
 * plus one outbound stream; with the outbound streams in a worker isolate it does not
 * happen. So the main isolate only serves, and this worker only dials.
 *
 * Protocol (structured-clone messages):
 * - in: `{type: "init", peers, reconnectDelayMsMin, reconnectDelayMsMax, queueFramesMax}`,
 *   `{type: "send", sends: [{peer, frames}]}` (each frame one encoded RaftBatch; all
 *   peers' frames of one loop turn in one message),
 * - out: `{type: "state", peer, connected}`, `{type: "refused", peer, code, details}` (the
 *   peer does not serve `dlock.v1.Peer`: it uses `--peer-transport tcp`).
 *
 * Closing: the owner terminates the worker. Links never close their channels
 * gracefully, because a graceful close sends an HTTP/2 GOAWAY, and GOAWAY processing is
 * exactly what aborts Deno (see above); terminating drops the sockets instead.
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { limits } from "../limits.ts";

/** Messages to the worker. */
export type WorkerRequest =
  | {
    type: "init";
    path: string;
    peers: string[];
    reconnectDelayMsMin: number;
    reconnectDelayMsMax: number;
    queueFramesMax: number;
  }
  | { type: "send"; sends: { peer: string; frames: Uint8Array[] }[] };

/** Messages from the worker. */
export type WorkerEvent =
  | { type: "state"; peer: string; connected: boolean }
  | { type: "refused"; peer: string; code: number; details: string };

// No keepalive pings: a peer that is down shows in Raft (no responses) and in failed
// writes, and pings invite GOAWAYs (too_many_pings) that we avoid (see above). The
// channel never idles out (which would close it with a GOAWAY): its stream stays open.
const channelOptions: grpc.ChannelOptions = {
  "grpc.max_receive_message_length": limits.messageBytesMax,
  "grpc.max_send_message_length": limits.messageBytesMax,
  "grpc.initial_reconnect_backoff_ms": 50,
  "grpc.max_reconnect_backoff_ms": 1000,
};

/** The worker's global scope, narrowed from the window-typed `self`. */
const scope = self as unknown as {
  postMessage(message: WorkerEvent): void;
  onmessage: ((event: MessageEvent<WorkerRequest>) => void) | null;
};
const post = (event: WorkerEvent) => scope.postMessage(event);
const identity = (frame: Uint8Array): Buffer =>
  Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength);
const ignoreResponse = (): unknown => ({});

class Link {
  readonly #client: grpc.Client;
  #call: grpc.ClientWritableStream<Uint8Array> | null = null;
  #queue: Uint8Array[] = [];
  #waitingForDrain = false;
  #delayMs: number;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;
  #connected = false;

  constructor(
    readonly peer: string,
    readonly config: Extract<WorkerRequest, { type: "init" }>,
  ) {
    this.#delayMs = config.reconnectDelayMsMin;
    this.#client = new grpc.Client(peer, grpc.credentials.createInsecure(), channelOptions);
    this.#connect();
  }

  send(frames: Uint8Array[]): void {
    // While the peer is down (between attempts), drop: Raft retransmits.
    if (this.#closed || this.#call === null) return;
    for (const frame of frames) {
      if (this.#waitingForDrain) {
        if (this.#queue.length < this.config.queueFramesMax) this.#queue.push(frame);
      } else if (!this.#call.write(frame)) {
        this.#waitingForDrain = true;
      }
    }
  }

  #setConnected(connected: boolean): void {
    if (this.#connected === connected) return;
    this.#connected = connected;
    post({ type: "state", peer: this.peer, connected });
  }

  #connect(): void {
    if (this.#closed) return;
    const call = this.#client.makeClientStreamRequest<Uint8Array, unknown>(
      this.config.path,
      identity,
      ignoreResponse,
      (error) => this.#ended(call, error),
    );
    this.#call = call;
    this.#waitingForDrain = false;
    this.#queue = [];
    call.on("metadata", () => {
      if (this.#call !== call) return;
      this.#delayMs = this.config.reconnectDelayMsMin;
      this.#setConnected(true);
    });
    call.on("drain", () => {
      if (this.#call !== call) return;
      this.#waitingForDrain = false;
      const queued = this.#queue;
      this.#queue = [];
      this.send(queued);
    });
  }

  #ended(call: grpc.ClientWritableStream<Uint8Array>, error: grpc.ServiceError | null): void {
    if (this.#call !== call) return;
    if (error !== null && error.code === grpc.status.UNIMPLEMENTED) {
      post({ type: "refused", peer: this.peer, code: error.code, details: error.details });
    }
    this.#call = null;
    this.#queue = [];
    this.#setConnected(false);
    if (this.#closed) return;
    const delayMs = this.#delayMs;
    this.#delayMs = Math.min(this.#delayMs * 2, this.config.reconnectDelayMsMax);
    this.#timer = setTimeout(() => this.#connect(), delayMs);
  }
}

const links = new Map<string, Link>();

scope.onmessage = (event: MessageEvent<WorkerRequest>) => {
  const request = event.data;
  switch (request.type) {
    case "init":
      for (const peer of request.peers) links.set(peer, new Link(peer, request));
      break;
    case "send":
      for (const { peer, frames } of request.sends) links.get(peer)?.send(frames);
      break;
  }
};

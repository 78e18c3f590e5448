/**
 * One multiplexed `Stream` RPC to one server. Every operation gets a call id; responses
 * are routed back by call id, in whatever order they come. When the stream breaks
 * (server gone, connection reset, closed by us), every pending call settles as
 * `broken` and the caller decides whether to retry elsewhere. Private to `src/client/`.
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import {
  channelOptions,
  lockServiceClient,
  type StreamOperation,
  type StreamRequest,
  type StreamResponse,
  summaryStatus,
} from "./_proto.ts";

/** How one call on a connection ended. */
export type CallOutcome =
  | { kind: "response"; response: StreamResponse }
  | {
    kind: "broken";
    message: string;
    /** True when the peer is not a dlock server at all: retrying it cannot help. */
    notDlockServer?: boolean;
  };

/** A call in flight: its id (to cancel it) and its outcome. */
export type PendingCall = { callId: number; outcome: Promise<CallOutcome> };

type DuplexCall = grpc.ClientDuplexStream<StreamRequest, StreamResponse>;

/**
 * A connection with calls in flight that has heard nothing from its server for this long
 * sends a probe (a Status, which any server answers at once, leader or not)...
 */
const probeAfterSilenceMs = 750;
/**
 * ...and is broken when the probe gets no answer within this long, so that its calls are
 * retried elsewhere. A server that stops answering without closing its connections (a
 * paused process, a frozen machine, a cut cable) is then left within about 1.5–1.75 s,
 * whatever the session TTL; without it only the keepalive's own timeout (TTL / 4, after up
 * to TTL / 3 of waiting for the next one) noticed, and a blocking acquire never would.
 */
const probeTimeoutMs = 750;
/** How often a connection with calls in flight checks how long it has heard nothing. */
const silenceCheckMs = 250;

/**
 * The calls in flight on one connection, whatever carries it: call ids, the per-call
 * answer timeout, routing answers by call id, and settling every pending call as broken,
 * once, when the connection breaks. Both connection kinds keep their calls here.
 */
export class CallTable {
  #pending = new Map<number, (outcome: CallOutcome) => void>();
  #timers = new Map<number, ReturnType<typeof setTimeout>>();
  #nextCallId = 1;
  #brokenMessage: string | null = null;
  #notDlockServer = false;
  readonly #onTimeout: (message: string) => void;
  readonly #send: (request: StreamRequest) => void;
  readonly #address: string;
  /** Runs while calls are in flight: probes a server that went silent. */
  #silenceTimer: ReturnType<typeof setInterval> | undefined;
  /** Since when nothing was heard while calls were in flight. */
  #quietSinceMs = 0;
  /** The probe in flight, if any. */
  #probeCallId: number | null = null;

  /**
   * `onTimeout` breaks the connection when a call (or a probe) gets no answer in time;
   * `send` writes a request on the connection (the table sends its probes with it).
   */
  constructor(
    address: string,
    onTimeout: (message: string) => void,
    send: (request: StreamRequest) => void,
  ) {
    this.#address = address;
    this.#onTimeout = onTimeout;
    this.#send = send;
  }

  /** Why the connection broke, or null while it works. */
  get brokenMessage(): string | null {
    return this.#brokenMessage;
  }

  /** A fresh call id (also for requests that get no answer of their own, like cancel). */
  nextCallId(): number {
    return this.#nextCallId++;
  }

  /**
   * Registers a call with a fresh id; on a broken connection it is settled as broken at
   * once (and the caller must not send it).
   */
  open(attemptTimeoutMs: number | null): PendingCall {
    const callId = this.nextCallId();
    if (this.#brokenMessage !== null) {
      const broken: CallOutcome = {
        kind: "broken",
        message: this.#brokenMessage,
        notDlockServer: this.#notDlockServer,
      };
      return { callId, outcome: Promise.resolve(broken) };
    }
    // Silence counts only while calls wait: the first of a new batch starts the clock.
    if (this.#waiting() === 0) this.#quietSinceMs = performance.now();
    const outcome = this.#register(
      callId,
      attemptTimeoutMs,
      `no answer from ${this.#address} within ${attemptTimeoutMs} ms`,
    );
    this.#silenceTimer ??= setInterval(() => this.#checkSilence(), silenceCheckMs);
    return { callId, outcome };
  }

  #register(
    callId: number,
    timeoutMs: number | null,
    timeoutMessage: string,
  ): Promise<CallOutcome> {
    const outcome = new Promise<CallOutcome>((resolve) => this.#pending.set(callId, resolve));
    if (timeoutMs !== null) {
      this.#timers.set(callId, setTimeout(() => this.#onTimeout(timeoutMessage), timeoutMs));
    }
    return outcome;
  }

  /** Calls in flight, not counting a probe. */
  #waiting(): number {
    return this.#pending.size - (this.#probeCallId === null ? 0 : 1);
  }

  /** Probes a server silent for too long while calls wait; stops when none wait. */
  #checkSilence(): void {
    if (this.#brokenMessage !== null || this.#waiting() === 0) {
      clearInterval(this.#silenceTimer);
      this.#silenceTimer = undefined;
      return;
    }
    if (this.#probeCallId !== null) return;
    if (performance.now() - this.#quietSinceMs < probeAfterSilenceMs) return;
    const callId = this.nextCallId();
    this.#probeCallId = callId;
    // Nobody awaits the probe's outcome: an answer only shows the server is alive.
    void this.#register(
      callId,
      probeTimeoutMs,
      `no answer from ${this.#address} for ${
        probeAfterSilenceMs + probeTimeoutMs
      } ms, nor to a probe`,
    );
    this.#send({ callId, ...summaryStatus });
  }

  /** Settles the call `response` answers (a late answer to a call given up on is dropped). */
  settle(response: StreamResponse): void {
    this.#quietSinceMs = performance.now();
    if (response.callId === this.#probeCallId) this.#probeCallId = null;
    const resolve = this.#pending.get(response.callId);
    if (resolve === undefined) return;
    this.#pending.delete(response.callId);
    const timer = this.#timers.get(response.callId);
    if (timer !== undefined) clearTimeout(timer);
    this.#timers.delete(response.callId);
    resolve({ kind: "response", response });
  }

  /**
   * Settles every pending call as broken; false if the connection was broken already.
   * @param notDlockServer true when the peer turned out not to be a dlock server.
   */
  breakAll(message: string, notDlockServer = false): boolean {
    if (this.#brokenMessage !== null) return false;
    this.#brokenMessage = message;
    this.#notDlockServer = notDlockServer;
    clearInterval(this.#silenceTimer);
    this.#silenceTimer = undefined;
    this.#probeCallId = null;
    for (const timer of this.#timers.values()) clearTimeout(timer);
    this.#timers.clear();
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const resolve of pending) resolve({ kind: "broken", message, notDlockServer });
    return true;
  }
}

/**
 * One multiplexed stream to one server, whatever carries it: the native protocol
 * (`_native_connection.ts`, the default) or the gRPC `Stream` RPC ({@link StreamConnection}).
 */
export interface Connection {
  /** The server this connection talks to ("host:port"). */
  readonly address: string;
  /** True once the stream broke or was closed; a broken connection is never reused. */
  readonly broken: boolean;
  /**
   * Sends `operation` with a fresh call id. With `attemptTimeoutMs`, a call that gets
   * no answer in time breaks the whole connection (the server is presumed unreachable),
   * so every other call on it is retried elsewhere too.
   */
  call(operation: StreamOperation, attemptTimeoutMs: number | null): PendingCall;
  /** Asks the server to cancel the pending acquire `callId` (no response of its own). */
  cancel(callId: number): void;
  /** Closes the connection; pending calls settle as broken. */
  close(message?: string): void;
}

/** Which protocol a client speaks: the native one (default) or gRPC. */
export type TransportKind = "native" | "grpc";

/**
 * A single bidi gRPC `Stream` to `address`, opened on construction.
 *
 * Closing it closes its grpc-js Client, which sends an HTTP/2 GOAWAY; a Deno 2.9.6
 * process that processes one can abort (denoland/deno#36788), so a dlock server's member
 * port drops client GOAWAYs (src/server/_http2_goaway_filter.ts). The client library
 * still uses the native protocol by default (no HTTP/2 at all); this class serves
 * `transport: "grpc"`.
 */
export class StreamConnection implements Connection {
  /** The server this connection talks to ("host:port"). */
  readonly address: string;
  #client: grpc.Client;
  #call: DuplexCall;
  readonly #calls: CallTable;

  constructor(address: string) {
    this.address = address;
    this.#calls = new CallTable(
      address,
      (message) => this.#break(message),
      (request) => this.#write(request),
    );
    const Client = lockServiceClient();
    this.#client = new Client(address, grpc.credentials.createInsecure(), channelOptions);
    // Library boundary: the generated method is not typed; narrow it once here.
    const method = (this.#client as unknown as Record<string, unknown>)["stream"] ??
      (this.#client as unknown as Record<string, unknown>)["Stream"];
    if (typeof method !== "function") {
      throw new Error("Cannot open a stream as the loaded dlock.v1.Lock client has no Stream");
    }
    this.#call = (method as () => DuplexCall).call(this.#client);
    this.#call.on("data", (response: StreamResponse) => this.#calls.settle(response));
    this.#call.on(
      "error",
      (error: Error) => this.#break(`stream to ${address} failed: ${error.message}`),
    );
    this.#call.on("end", () => this.#break(`stream to ${address} ended by the server`));
    this.#call.on("close", () => this.#break(`stream to ${address} closed`));
  }

  /** True once the stream broke or was closed; a broken connection is never reused. */
  get broken(): boolean {
    return this.#calls.brokenMessage !== null;
  }

  /**
   * Sends `operation` with a fresh call id. With `attemptTimeoutMs`, a call that gets
   * no answer in time breaks the whole connection (the server is presumed unreachable),
   * so every other call on it is retried elsewhere too.
   */
  call(operation: StreamOperation, attemptTimeoutMs: number | null): PendingCall {
    const pending = this.#calls.open(attemptTimeoutMs);
    if (this.#calls.brokenMessage === null) this.#write({ callId: pending.callId, ...operation });
    return pending;
  }

  /** Asks the server to cancel the pending acquire `callId` (no response of its own). */
  cancel(callId: number): void {
    if (this.#calls.brokenMessage !== null) return;
    this.#write({ callId: this.#calls.nextCallId(), cancel: { callId } });
  }

  /** Closes the stream and the channel; pending calls settle as broken. */
  close(message = "connection closed by the client"): void {
    this.#break(message);
  }

  #write(request: StreamRequest): void {
    try {
      this.#call.write(request);
    } catch (error) {
      this.#break(`cannot write to ${this.address}: ${String(error)}`);
    }
  }

  #break(message: string): void {
    if (!this.#calls.breakAll(message)) return;
    try {
      this.#call.cancel();
    } catch {
      // Already finished: nothing to cancel.
    }
    this.#client.close();
  }
}

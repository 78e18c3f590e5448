/**
 * One multiplexed stream to one server over the native protocol
 * (src/transport/length_prefixed.ts): a TCP connection that starts with `DLK1`, then
 * length-prefixed `dlock.v1.StreamRequest` frames out and `dlock.v1.StreamResponse`
 * frames in, with the semantics of the gRPC `Stream` RPC. No HTTP/2 anywhere, so no
 * GOAWAY: closing is closing the socket. Private to `src/client/`.
 *
 * @module
 */
import { limits } from "../limits.ts";
import {
  FrameReader,
  FrameTooLargeError,
  FrameWriter,
  nativeMagic,
} from "../transport/length_prefixed.ts";
import type { CallOutcome, Connection, PendingCall } from "./_connection.ts";
import {
  nativeStreamCodec,
  type StreamOperation,
  type StreamRequest,
  type StreamResponse,
} from "./_proto.ts";

/** How long the TCP connect may take before the connection counts as broken. */
const connectTimeoutMs = 5_000;

/** Splits `host:port` (`[v6]:port` too) for Deno.connect. */
function hostAndPort(address: string): { hostname: string; port: number } {
  const separator = address.lastIndexOf(":");
  const host = separator < 0 ? address : address.slice(0, separator);
  const port = separator < 0 ? NaN : Number(address.slice(separator + 1));
  return { hostname: host.startsWith("[") ? host.slice(1, -1) : host, port };
}

/** A native stream to `address`; connects on construction, queueing calls meanwhile. */
export class NativeStreamConnection implements Connection {
  /** The server this connection talks to ("host:port"). */
  readonly address: string;
  #conn: Deno.TcpConn | null = null;
  #pending = new Map<number, (outcome: CallOutcome) => void>();
  #timers = new Map<number, ReturnType<typeof setTimeout>>();
  #nextCallId = 1;
  #brokenMessage: string | null = null;
  readonly #writer: FrameWriter;
  readonly #codec = nativeStreamCodec();

  constructor(address: string) {
    this.address = address;
    this.#writer = new FrameWriter(
      4 * limits.messageBytesMax,
      (error) => this.#break(`cannot write to ${address}: ${String(error)}`),
      nativeMagic,
    );
    void this.#open();
  }

  /** True once the stream broke or was closed; a broken connection is never reused. */
  get broken(): boolean {
    return this.#brokenMessage !== null;
  }

  call(operation: StreamOperation, attemptTimeoutMs: number | null): PendingCall {
    const callId = this.#nextCallId++;
    if (this.#brokenMessage !== null) {
      return { callId, outcome: Promise.resolve({ kind: "broken", message: this.#brokenMessage }) };
    }
    const outcome = new Promise<CallOutcome>((resolve) => this.#pending.set(callId, resolve));
    if (attemptTimeoutMs !== null) {
      this.#timers.set(
        callId,
        setTimeout(() => {
          this.#break(`no answer from ${this.address} within ${attemptTimeoutMs} ms`);
        }, attemptTimeoutMs),
      );
    }
    this.#send({ callId, ...operation });
    return { callId, outcome };
  }

  cancel(callId: number): void {
    if (this.#brokenMessage !== null) return;
    this.#send({ callId: this.#nextCallId++, cancel: { callId } });
  }

  /** Closes the socket; pending calls settle as broken. */
  close(message = "connection closed by the client"): void {
    this.#break(message);
  }

  #send(request: StreamRequest): void {
    let frame: Uint8Array;
    try {
      frame = this.#codec.encodeRequest(request);
    } catch (error) {
      this.#break(`cannot encode a request to ${this.address}: ${String(error)}`);
      return;
    }
    this.#writer.push(frame);
  }

  async #open(): Promise<void> {
    const { hostname, port } = hostAndPort(this.address);
    const timer = setTimeout(
      () => this.#break(`cannot connect to ${this.address} within ${connectTimeoutMs} ms`),
      connectTimeoutMs,
    );
    let conn: Deno.TcpConn;
    try {
      conn = await Deno.connect({ hostname, port });
    } catch (error) {
      this.#break(`cannot connect to ${this.address}: ${errorText(error)}`);
      return;
    } finally {
      clearTimeout(timer);
    }
    if (this.#brokenMessage !== null) {
      closeQuietly(conn);
      return;
    }
    conn.setNoDelay(true);
    this.#conn = conn;
    this.#writer.attach(conn);
    await this.#read(conn);
  }

  async #read(conn: Deno.TcpConn): Promise<void> {
    const reader = new FrameReader(conn, limits.messageBytesMax);
    try {
      for (;;) {
        const frame = await reader.next();
        if (frame === null) {
          this.#break(`stream to ${this.address} ended by the server`);
          return;
        }
        let response: StreamResponse;
        try {
          response = this.#codec.decodeResponse(frame);
        } catch (error) {
          this.#break(`cannot decode an answer from ${this.address}: ${errorText(error)}`);
          return;
        }
        this.#onResponse(response);
      }
    } catch (error) {
      this.#break(
        error instanceof FrameTooLargeError
          ? `${this.address} sent an oversized frame: ${error.message}`
          : `stream to ${this.address} failed: ${errorText(error)}`,
      );
    }
  }

  #onResponse(response: StreamResponse): void {
    const resolve = this.#pending.get(response.callId);
    if (resolve === undefined) return; // A late answer to a call we gave up on.
    this.#pending.delete(response.callId);
    const timer = this.#timers.get(response.callId);
    if (timer !== undefined) clearTimeout(timer);
    this.#timers.delete(response.callId);
    resolve({ kind: "response", response });
  }

  #break(message: string): void {
    if (this.#brokenMessage !== null) return;
    this.#brokenMessage = message;
    for (const timer of this.#timers.values()) clearTimeout(timer);
    this.#timers.clear();
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const resolve of pending) resolve({ kind: "broken", message });
    if (this.#conn !== null) closeQuietly(this.#conn);
  }
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}

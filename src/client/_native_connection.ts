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
import { CallTable, type Connection, type PendingCall } from "./_connection.ts";
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
  readonly #calls: CallTable;
  readonly #writer: FrameWriter;
  readonly #codec = nativeStreamCodec();

  constructor(address: string) {
    this.address = address;
    this.#calls = new CallTable(
      address,
      (message) => this.#break(message),
      (request) => this.#send(request),
    );
    this.#writer = new FrameWriter(
      4 * limits.messageBytesMax,
      (error) => this.#break(`cannot write to ${address}: ${String(error)}`),
      nativeMagic,
    );
    void this.#open();
  }

  /** True once the stream broke or was closed; a broken connection is never reused. */
  get broken(): boolean {
    return this.#calls.brokenMessage !== null;
  }

  call(operation: StreamOperation, attemptTimeoutMs: number | null): PendingCall {
    const pending = this.#calls.open(attemptTimeoutMs);
    if (this.#calls.brokenMessage === null) this.#send({ callId: pending.callId, ...operation });
    return pending;
  }

  cancel(callId: number): void {
    if (this.#calls.brokenMessage !== null) return;
    this.#send({ callId: this.#calls.nextCallId(), cancel: { callId } });
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
    if (this.#calls.brokenMessage !== null) {
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
    let framesRead = 0;
    try {
      for (;; framesRead++) {
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
        this.#calls.settle(response);
      }
    } catch (error) {
      if (error instanceof FrameTooLargeError && framesRead === 0) {
        // No dlock server answers with an oversized first frame: the peer speaks another
        // protocol (its first bytes were read as a length), and retrying cannot help.
        this.#break(notDlockServerMessage(this.address, reader.buffered), true);
        return;
      }
      this.#break(
        error instanceof FrameTooLargeError
          ? `${this.address} sent an oversized frame: ${error.message}`
          : `stream to ${this.address} failed: ${errorText(error)}`,
      );
    }
  }

  #break(message: string, notDlockServer = false): void {
    if (!this.#calls.breakAll(message, notDlockServer)) return;
    if (this.#conn !== null) closeQuietly(this.#conn);
  }
}

/**
 * What to say about a peer whose first answer is not a dlock frame, from its first bytes:
 * an HTTP server (the filewriter listens on HTTP) is named as such.
 */
export function notDlockServerMessage(address: string, firstBytes: Uint8Array): string {
  const text = new TextDecoder().decode(firstBytes.subarray(0, 64));
  const firstLine = text.split(/\r?\n/)[0] ?? "";
  const answered = firstLine.startsWith("HTTP/")
    ? "it answered like an HTTP server: is it the filewriter?"
    : /^[\x20-\x7e]{4}/.test(firstLine)
    ? `it answered ${JSON.stringify(firstLine.slice(0, 40))}`
    : "its answer is not a dlock frame";
  return `Cannot talk to ${address} as it is not a dlock server (${answered})`;
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

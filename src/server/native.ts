/**
 * The client API port: one TCP listener that sniffs the first bytes of each connection.
 *
 * - The HTTP/2 client preface (`PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`): a gRPC client. The
 *   connection is piped to the internal grpc-js server (listening on a Unix socket, so
 *   it takes no TCP port another server could want), so gRPC clients, grpcurl included,
 *   see the unchanged API. The pipe passes every byte except the client's GOAWAY frames,
 *   which would reach Deno's node:http2 and its abort (denoland/deno#36788; see
 *   _http2_goaway_filter.ts). dlock's own client library speaks the native protocol by
 *   default, which has no GOAWAY at all.
 * - {@link nativeMagic} (`DLK1`): the native protocol, length-prefixed protobuf frames
 *   (uint32 big-endian length): `dlock.v1.StreamRequest` in, `dlock.v1.StreamResponse`
 *   out, served by the same stream implementation as the gRPC `Stream` RPC
 *   ({@link OpenStream}). Responses produced in one turn of the event loop go out in one
 *   write.
 * - Anything else, or nothing within {@link ClientFrontendOptions.sniffTimeoutMs}: the
 *   connection is closed (and logged).
 *
 * A native connection that sends an oversized or undecodable frame is closed and
 * logged; the server keeps serving everything else.
 *
 * @module
 */
import { limits } from "../limits.ts";
import type { Logger } from "../log.ts";
import {
  FrameReader,
  FrameTooLargeError,
  FrameWriter,
  nativeMagic,
  writeAll,
} from "../transport/length_prefixed.ts";
import { loadPackageDefinition } from "../transport/proto.ts";
import { LogLimiter } from "../transport/log_limiter.ts";
import { Http2GoawayFilter } from "./_http2_goaway_filter.ts";
import type { OpenStream, StreamSession } from "./service.ts";

const http2Preface = new TextEncoder().encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

/** Options of {@link ClientFrontend}. */
export interface ClientFrontendOptions {
  /** Address to listen on (the member address). */
  readonly hostname: string;
  readonly port: number;
  /**
   * Where the internal gRPC server listens (HTTP/2 connections are piped there): a Unix
   * socket (the server) or a loopback TCP port (test doubles).
   */
  readonly grpcAddress: Deno.UnixConnectOptions | Deno.ConnectOptions;
  /**
   * Starts the internal gRPC server if it is not running yet (the server loads grpc-js
   * only when a gRPC client comes); awaited before each HTTP/2 connection is piped.
   * Absent: the gRPC server is always running.
   */
  readonly startGrpc?: () => Promise<void>;
  /** Serves one native stream. */
  readonly openStream: OpenStream;
  readonly logger: Logger;
  /** Largest frame accepted (default limits.messageBytesMax). */
  readonly frameBytesMax?: number;
  /** Time a new connection has to identify itself (default 10 s). */
  readonly sniffTimeoutMs?: number;
  /** Bytes of responses queued for a client that does not read before it is dropped. */
  readonly queueBytesMax?: number;
}

type Decode = (bytes: Uint8Array) => unknown;
type Encode = (message: Record<string, unknown>) => Uint8Array;

/** Encoder and decoder of the native protocol's messages (server side). */
export function streamCodec(): { decodeRequest: Decode; encodeResponse: Encode } {
  const definition = loadPackageDefinition("lock.proto");
  const service = definition["dlock.v1.Lock"] as Record<string, unknown> | undefined;
  const method = service?.["Stream"] as Record<string, unknown> | undefined;
  const requestDeserialize = method?.["requestDeserialize"];
  const responseSerialize = method?.["responseSerialize"];
  if (typeof requestDeserialize !== "function" || typeof responseSerialize !== "function") {
    throw new Error("Cannot load the native protocol as dlock.v1.Lock has no Stream method");
  }
  // Library boundary: proto-loader's (de)serializers take and give Buffers.
  return {
    decodeRequest: (bytes) => requestDeserialize(bytes),
    encodeResponse: (message) => responseSerialize(message) as Uint8Array,
  };
}

/** The listener of the client API port; see the module documentation. */
export class ClientFrontend {
  readonly #options: ClientFrontendOptions;
  readonly #listener: Deno.TcpListener;
  readonly #connections = new Set<Deno.Conn>();
  readonly #codec = streamCodec();
  /** Connections that spoke no known protocol, by remote host: logged once in a while. */
  readonly #unknownProtocols = new LogLimiter();
  #closed = false;

  /**
   * Binds the client API port.
   * @throws {Deno.errors.AddrInUse} when the port is taken.
   */
  constructor(options: ClientFrontendOptions) {
    this.#options = options;
    this.#listener = Deno.listen({ hostname: options.hostname, port: options.port });
    void this.#accept();
  }

  /** The bound port. */
  get port(): number {
    return this.#listener.addr.port;
  }

  /** Stops listening and drops every connection. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    closeQuietly(this.#listener);
    for (const conn of this.#connections) closeQuietly(conn);
    this.#connections.clear();
  }

  async #accept(): Promise<void> {
    try {
      for await (const conn of this.#listener) {
        if (this.#closed) {
          closeQuietly(conn);
          break;
        }
        this.#connections.add(conn);
        this.#handle(conn).catch((error) => {
          this.#options.logger.warn("client connection failed", { error: String(error) });
        }).finally(() => {
          this.#connections.delete(conn);
          closeQuietly(conn);
        });
      }
    } catch (error) {
      if (!this.#closed) {
        this.#options.logger.error("the client API listener failed", { error: String(error) });
      }
    }
  }

  async #handle(conn: Deno.TcpConn): Promise<void> {
    conn.setNoDelay(true);
    conn.setKeepAlive(true); // A vanished client's connection does not linger forever.
    const frameBytesMax = this.#options.frameBytesMax ?? limits.messageBytesMax;
    const reader = new FrameReader(conn, frameBytesMax);
    const remote = describe(conn);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      closeQuietly(conn);
    }, this.#options.sniffTimeoutMs ?? 10_000);
    let kind: "native" | "grpc" | "other";
    try {
      const head = await reader.peek(nativeMagic.byteLength);
      if (startsWith(head, nativeMagic)) {
        kind = "native";
      } else if (startsWith(http2Preface, head.subarray(0, nativeMagic.byteLength))) {
        const preface = await reader.peek(http2Preface.byteLength);
        kind = startsWith(preface, http2Preface) ? "grpc" : "other";
      } else {
        kind = "other";
      }
    } catch (error) {
      // Reset before it said anything (or closed by the timer): nothing to serve.
      if (!timedOut) {
        this.#options.logger.debug("client connection lost before it identified itself", {
          remote,
          error: String(error),
        });
      }
      return;
    } finally {
      clearTimeout(timer);
    }
    if (timedOut || this.#closed) {
      this.#options.logger.debug("closing a client connection that did not identify itself", {
        remote,
      });
      return;
    }
    if (kind === "native") {
      reader.skip(nativeMagic.byteLength);
      await this.#serveNative(conn, reader, remote);
    } else if (kind === "grpc") {
      await this.#proxy(conn, reader.buffered, remote);
    } else if (reader.buffered.byteLength > 0) {
      this.#logUnknownProtocol(conn, reader.buffered);
    }
  }

  /**
   * Logs a connection that speaks no known protocol, once per remote host every 10 s
   * (a misconfigured dlock server redials many times a second), with a hint when it
   * looks like Raft peer traffic.
   */
  #logUnknownProtocol(conn: Deno.TcpConn, head: Uint8Array): void {
    const due = this.#unknownProtocols.due(conn.remoteAddr.hostname);
    if (due === null) return;
    const peerLike = looksLikePeerFrame(head);
    this.#options.logger.warn(
      peerLike
        ? "closing a client connection that speaks no known protocol: it looks like Raft " +
          "peer traffic, so another server's peer port (member port + --peer-port-offset) " +
          "is this member port; use a --peer-port-offset that maps no member onto another"
        : "closing a client connection that speaks no known protocol: only dlock clients " +
          "(native or gRPC) belong on a member port",
      {
        remote: describe(conn),
        head: printable(head.subarray(0, 24)),
        closedSinceLastLog: due.suppressed,
      },
    );
  }

  /** Serves native frames on `conn` until it ends or misbehaves. */
  async #serveNative(conn: Deno.TcpConn, reader: FrameReader, remote: string): Promise<void> {
    const logger = this.#options.logger;
    let session: StreamSession | null = null;
    const writer = new FrameWriter(
      this.#options.queueBytesMax ?? 4 * limits.messageBytesMax,
      (error) => {
        logger.warn("dropping a native client connection that cannot be written", {
          remote,
          error: String(error),
        });
        session?.close();
        closeQuietly(conn);
      },
    );
    writer.attach(conn);
    const { decodeRequest, encodeResponse } = this.#codec;
    session = this.#options.openStream({
      write: (response) => {
        let frame: Uint8Array;
        try {
          frame = encodeResponse(response);
        } catch (error) {
          logger.error("cannot encode a stream response", { error: String(error) });
          return;
        }
        writer.push(frame);
      },
      end: () => closeQuietly(conn),
    });
    try {
      for (;;) {
        let frame: Uint8Array | null;
        try {
          frame = await reader.next();
        } catch (error) {
          if (error instanceof FrameTooLargeError) {
            logger.warn("closing a native client connection that sent an oversized frame", {
              remote,
              error: error.message,
            });
          }
          return;
        }
        if (frame === null || this.#closed) return;
        let request: unknown;
        try {
          request = decodeRequest(frame);
        } catch (error) {
          logger.warn("closing a native client connection that sent an undecodable frame", {
            remote,
            error: String(error),
          });
          return;
        }
        session.receive(request);
      }
    } finally {
      session.close();
    }
  }

  /** Pipes an HTTP/2 connection to the internal gRPC server, both ways. */
  async #proxy(conn: Deno.TcpConn, head: Uint8Array, remote: string): Promise<void> {
    let upstream: Deno.Conn;
    try {
      await this.#options.startGrpc?.();
      const target = this.#options.grpcAddress;
      if ("path" in target) {
        upstream = await Deno.connect(target);
      } else {
        const tcp = await Deno.connect(target);
        tcp.setNoDelay(true);
        upstream = tcp;
      }
    } catch (error) {
      this.#options.logger.error("cannot reach the internal gRPC server", {
        remote,
        error: String(error),
      });
      return;
    }
    this.#connections.add(upstream);
    // The client's GOAWAYs never reach grpc-js: see _http2_goaway_filter.ts.
    const filter = new Http2GoawayFilter();
    try {
      await writeAll(upstream, filter.push(head));
      // The first direction to end ends both: HTTP/2 has no use for half-closed TCP.
      await Promise.race([
        pump(conn, upstream, (bytes) => filter.push(bytes)),
        pump(upstream, conn, (bytes) => bytes),
      ]);
    } catch {
      // A reset on either side: close both.
    } finally {
      this.#connections.delete(upstream);
      closeQuietly(upstream);
      closeQuietly(conn);
      if (filter.dropped > 0) {
        this.#options.logger.debug("dropped a gRPC client's GOAWAY", {
          remote,
          frames: filter.dropped,
        });
      }
    }
  }
}

/**
 * Copies `from` to `to`, each read passed through `transform`, until the end of `from`
 * or an error.
 */
async function pump(
  from: Deno.Conn,
  to: Deno.Conn,
  transform: (bytes: Uint8Array) => Uint8Array,
): Promise<void> {
  const buffer = new Uint8Array(64 * 1024);
  try {
    for (;;) {
      const read = await from.read(buffer);
      if (read === null) return;
      const bytes = transform(buffer.subarray(0, read));
      if (bytes.byteLength > 0) await writeAll(to, bytes);
    }
  } catch {
    // Reset or closed by the other direction.
  }
}

function startsWith(bytes: Uint8Array, prefix: Uint8Array): boolean {
  if (bytes.byteLength < prefix.byteLength) return false;
  for (let index = 0; index < prefix.byteLength; index++) {
    if (bytes[index] !== prefix[index]) return false;
  }
  return true;
}

/**
 * Whether `head` starts like a peer transport frame: a 4-byte length, then a
 * `dlock.v1.RaftBatch` whose first field is `cluster_id` (field 1, length-delimited).
 */
function looksLikePeerFrame(head: Uint8Array): boolean {
  return head.byteLength >= 5 && head[0] === 0 && head[4] === 0x0a;
}

function describe(conn: Deno.TcpConn): string {
  const address = conn.remoteAddr;
  return `${address.hostname}:${address.port}`;
}

function printable(bytes: Uint8Array): string {
  return Array.from(
    bytes,
    (byte) =>
      byte >= 0x20 && byte < 0x7f
        ? String.fromCharCode(byte)
        : `\\x${byte.toString(16).padStart(2, "0")}`,
  ).join("");
}

function closeQuietly(resource: { close(): void }): void {
  try {
    resource.close();
  } catch {
    // Already closed.
  }
}

/**
 * Loads `proto/dlock/v1/lock.proto` for the client and describes its messages as
 * TypeScript types. Private to `src/client/`.
 *
 * Loader options (shared with the server, so both sides see the same shapes):
 * camelCase field names (`sessionId`), 64-bit integers as JavaScript numbers,
 * default values filled in, and a virtual `op` / `result` field naming the member set in
 * each `oneof`.
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import type { Downstream } from "../errors.ts";
import * as protoLoader from "@grpc/proto-loader";
import { fileURLToPath } from "node:url";
import { limits } from "../limits.ts";

/** proto-loader options; the server loads the same file with the same options. */
export const protoLoaderOptions: protoLoader.Options = {
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
};

/** Channel options for every client connection. */
export const channelOptions: grpc.ChannelOptions = {
  "grpc.max_receive_message_length": limits.messageBytesMax,
  "grpc.max_send_message_length": limits.messageBytesMax,
  // No HTTP/2 keepalive pings: the session keepalives (every ttl/3, each with an answer
  // deadline) already detect a dead or paused server, and pings a server finds too
  // frequent get the connection closed (GOAWAY ENHANCE_YOUR_CALM).
  "grpc.initial_reconnect_backoff_ms": 100,
  "grpc.max_reconnect_backoff_ms": 1_000,
};

/** The generated `dlock.v1.Lock` client constructor. */
export type LockServiceClientConstructor = new (
  address: string,
  credentials: grpc.ChannelCredentials,
  options?: grpc.ChannelOptions,
) => grpc.Client;

let cachedConstructor: LockServiceClientConstructor | null = null;
let cachedDefinition: protoLoader.PackageDefinition | null = null;

function protoPath(): string {
  return fileURLToPath(new URL("../../proto/dlock/v1/lock.proto", import.meta.url));
}

function definition(): protoLoader.PackageDefinition {
  cachedDefinition ??= protoLoader.loadSync(protoPath(), protoLoaderOptions);
  return cachedDefinition;
}

/** Encoder and decoder of the native protocol's messages (client side). */
export type NativeStreamCodec = {
  encodeRequest(request: StreamRequest): Uint8Array;
  decodeResponse(bytes: Uint8Array): StreamResponse;
};

let cachedCodec: NativeStreamCodec | null = null;

/**
 * The `Stream` method's (de)serializers, so native frames carry exactly the messages
 * (and decode to exactly the shapes) of the gRPC `Stream`.
 */
export function nativeStreamCodec(): NativeStreamCodec {
  if (cachedCodec !== null) return cachedCodec;
  const service = definition()["dlock.v1.Lock"] as Record<string, unknown> | undefined;
  const method = service?.["Stream"] as Record<string, unknown> | undefined;
  const requestSerialize = method?.["requestSerialize"];
  const responseDeserialize = method?.["responseDeserialize"];
  if (typeof requestSerialize !== "function" || typeof responseDeserialize !== "function") {
    throw new Error(`Cannot load the native protocol as ${protoPath()} has no Lock/Stream`);
  }
  // Library boundary: proto-loader's (de)serializers are untyped; narrow them once here.
  cachedCodec = {
    encodeRequest: (request) => requestSerialize(request) as Uint8Array,
    decodeResponse: (bytes) => responseDeserialize(bytes) as StreamResponse,
  };
  return cachedCodec;
}

/** Returns the `dlock.v1.Lock` client constructor, loading the proto once. */
export function lockServiceClient(): LockServiceClientConstructor {
  if (cachedConstructor !== null) return cachedConstructor;
  const loaded = grpc.loadPackageDefinition(definition());
  // Library boundary: the loaded package is untyped; narrow it once here.
  const dlock = loaded["dlock"] as grpc.GrpcObject | undefined;
  const v1 = dlock?.["v1"] as grpc.GrpcObject | undefined;
  const service = v1?.["Lock"];
  if (typeof service !== "function") {
    throw new Error(`Cannot load the client API as ${protoPath()} has no service dlock.v1.Lock`);
  }
  cachedConstructor = service as unknown as LockServiceClientConstructor;
  return cachedConstructor;
}

/** `dlock.v1.Error` (`downstream` is null or absent when unset, or from older servers). */
export type ErrorMessage = {
  reason: string;
  message: string;
  leader: string;
  downstream?: Downstream | null;
};

/** `dlock.v1.OpenSessionRequest`. */
export type OpenSessionRequest = { clientName: string; ttlMs: number; openKey: string };
/** `dlock.v1.OpenSessionResponse`. */
export type OpenSessionResponse = { sessionId: number; ttlMs: number };
/** `dlock.v1.KeepAliveRequest`. */
export type KeepAliveRequest = { sessionId: number };
/** `dlock.v1.KeepAliveResponse`. */
export type KeepAliveResponse = { sessionId: number; ttlMs: number; error: ErrorMessage | null };
/** `dlock.v1.CloseSessionRequest`. */
export type CloseSessionRequest = { sessionId: number; requestId: number };
/** `dlock.v1.CloseSessionResponse`. */
export type CloseSessionResponse = { released: string[] };
/** `dlock.v1.AcquireRequest`. */
export type AcquireRequest = {
  sessionId: number;
  lock: string;
  requestId: number;
  wait: boolean;
  timeoutMs: number;
};
/** `dlock.v1.AcquireResponse`. */
export type AcquireResponse = { acquired: boolean; token: number };
/** `dlock.v1.ReleaseRequest`. */
export type ReleaseRequest = { sessionId: number; lock: string; requestId: number; token: number };
/** `dlock.v1.ReleaseResponse`. */
export type ReleaseResponse = { released: boolean };
/** `dlock.v1.AppendRequest`. */
export type AppendRequest = {
  sessionId: number;
  lock: string;
  token: number;
  file: string;
  data: Uint8Array;
  requestId: string;
};
/** `dlock.v1.AppendResponse`. */
export type AppendResponse = { offset: number; duplicate: boolean };
/** `dlock.v1.StatusRequest`. */
export type StatusRequest = { locksLimit: number; summaryOnly?: boolean };
/** `dlock.v1.Member`. */
export type Member = {
  address: string;
  isLeader: boolean;
  isSelf: boolean;
  /** Absent from servers older than this field, and from the fake test cluster. */
  contactKnown?: boolean;
  lastContactMsAgo?: number;
  matchIndex?: number;
};
/** `dlock.v1.SessionInfo`. */
export type SessionInfo = {
  id: number;
  clientName: string;
  ttlMs: number;
  held: number;
  waiting: number;
};
/** `dlock.v1.Waiter`. */
export type Waiter = { sessionId: number; clientName: string };
/** `dlock.v1.LockInfo`. */
export type LockInfo = {
  name: string;
  holderSession: number;
  holderName: string;
  token: number;
  waiters: Waiter[];
};
/** `dlock.v1.StatusResponse`. */
export type StatusResponse = {
  self: string;
  role: string;
  leader: string;
  term: number;
  commitIndex: number;
  appliedIndex: number;
  members: Member[];
  sessions: SessionInfo[];
  locks: LockInfo[];
  lockCount: number;
  sessionCount: number;
  filewriter: string;
  /** 0 or absent: not reported. */
  electionTimeoutMs?: number;
};
/** `dlock.v1.CancelRequest`. */
export type CancelRequest = { callId: number };

/** The operation of one `StreamRequest` (exactly one member of its `op` oneof). */
export type StreamOperation =
  | { openSession: OpenSessionRequest }
  | { keepAlive: KeepAliveRequest }
  | { closeSession: CloseSessionRequest }
  | { acquire: AcquireRequest }
  | { release: ReleaseRequest }
  | { append: AppendRequest }
  | { status: StatusRequest }
  | { cancel: CancelRequest };

/**
 * A Status that asks only for the cluster fields and the counts (no sessions, no locks):
 * the client's leader discovery and its liveness probe. `locksLimit` 1 is what a server
 * that predates `summaryOnly` then lists.
 */
export const summaryStatus: StreamOperation = { status: { locksLimit: 1, summaryOnly: true } };

/** `dlock.v1.StreamRequest` as sent. */
export type StreamRequest = { callId: number } & StreamOperation;

/** `dlock.v1.StreamResponse` as decoded (`result` names the member that is set). */
export type StreamResponse = {
  callId: number;
  result?: string;
  openSession?: OpenSessionResponse | null;
  keepAlive?: KeepAliveResponse | null;
  closeSession?: CloseSessionResponse | null;
  acquire?: AcquireResponse | null;
  release?: ReleaseResponse | null;
  append?: AppendResponse | null;
  status?: StatusResponse | null;
  error?: ErrorMessage | null;
};

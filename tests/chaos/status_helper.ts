/**
 * A helper process that asks servers who leads, straight over gRPC
 * (`dlock.v1.Lock/Status`), without opening a session. It answers one JSON line
 * `{"id":1,"leader":"host:port"|null}` per request line
 * `{"id":1,"addresses":["host:port",...],"timeoutMs":500}` on stdin.
 *
 * It is a separate process because Deno 2.9.6 can abort a whole process inside
 * `node:http2` when a server closes a connection (an nghttp2 assertion on GOAWAY, seen in
 * chaos runs); the harness must survive that, so it keeps gRPC out of its own process
 * and restarts this helper when it dies (see `status.ts`).
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { fileURLToPath } from "node:url";

/** The parts of `dlock.v1.StatusResponse` the harness reads. */
export type ServerStatus = {
  self: string;
  role: string;
  leader: string;
  term: number;
  commitIndex: number;
};

type StatusClient = grpc.Client & {
  Status(
    request: Record<string, never>,
    options: grpc.CallOptions,
    callback: (error: grpc.ServiceError | null, response?: ServerStatus) => void,
  ): grpc.ClientUnaryCall;
};

type StatusClientConstructor = new (
  address: string,
  credentials: grpc.ChannelCredentials,
) => StatusClient;

let constructorCache: StatusClientConstructor | null = null;

function statusClientConstructor(): StatusClientConstructor {
  if (constructorCache !== null) return constructorCache;
  const protoPath = fileURLToPath(new URL("../../proto/dlock/v1/lock.proto", import.meta.url));
  const definition = protoLoader.loadSync(protoPath, {
    keepCase: false,
    longs: Number,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const loaded = grpc.loadPackageDefinition(definition);
  // Library boundary: narrow the untyped package once.
  const service = ((loaded["dlock"] as grpc.GrpcObject)["v1"] as grpc.GrpcObject)["Lock"];
  if (typeof service !== "function") throw new Error(`Cannot find dlock.v1.Lock in ${protoPath}`);
  constructorCache = service as unknown as StatusClientConstructor;
  return constructorCache;
}

/** Keeps one channel per server address for the whole run. */
class StatusProbe {
  readonly #clients = new Map<string, StatusClient>();

  #client(address: string): StatusClient {
    let client = this.#clients.get(address);
    if (client === undefined) {
      const Constructor = statusClientConstructor();
      client = new Constructor(address, grpc.credentials.createInsecure());
      this.#clients.set(address, client);
    }
    return client;
  }

  /** Status of one server, or null when it does not answer within `timeoutMs`. */
  status(address: string, timeoutMs = 1_000): Promise<ServerStatus | null> {
    const client = this.#client(address);
    return new Promise((resolve) => {
      client.Status({}, { deadline: Date.now() + timeoutMs }, (error, response) => {
        resolve(error !== null || response === undefined ? null : response);
      });
    });
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

  /** Closes every channel. */
  close(): void {
    for (const client of this.#clients.values()) client.close();
    this.#clients.clear();
  }
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

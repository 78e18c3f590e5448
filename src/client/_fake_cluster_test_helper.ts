/**
 * A small in-process stand-in for a dlock cluster, serving the real `dlock.v1.Lock`
 * Stream RPC over real gRPC sockets, for the client library's own tests: it lets the
 * tests move leadership, drop streams and withhold keepalive answers at exact moments,
 * which real servers cannot be made to do deterministically. The real servers are
 * exercised by tests/integration/. Test-only. Tests use {@link FakeClusterWorker}, which
 * runs the servers in a Worker (never serve and dial HTTP/2 in one isolate).
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { EventEmitter } from "node:events";
import { fileURLToPath } from "node:url";
import { silentLogger } from "../log.ts";
import { ClientFrontend } from "../server/native.ts";
import type { StreamPeer, StreamSession } from "../server/service.ts";
import {
  type ErrorMessage,
  protoLoaderOptions,
  type StreamRequest,
  type StreamResponse,
} from "./_proto.ts";

/** The parts of a gRPC server stream the fake servers use (native streams mimic them). */
type Call = Pick<
  grpc.ServerDuplexStream<StreamRequest, StreamResponse>,
  "on" | "write" | "end" | "destroy"
>;

/**
 * A native stream dressed as a gRPC server stream, so one fake implementation serves
 * both protocols. `end` and `destroy` close the TCP connection.
 */
class NativeCall extends EventEmitter {
  #open = true;
  constructor(readonly peer: StreamPeer, readonly hangUp: () => void) {
    super();
  }
  write(response: StreamResponse): boolean {
    if (this.#open) this.peer.write(response as unknown as Record<string, unknown>);
    return true;
  }
  end(): this {
    this.#finish();
    return this;
  }
  destroy(): this {
    this.#finish();
    return this;
  }
  #finish(): void {
    if (!this.#open) return;
    this.#open = false;
    this.hangUp();
  }
}
type Waiter = { sessionId: number; requestId: number; call: Call; callId: number };

/** Shared lock state of the fake cluster plus knobs for the tests. */
export class FakeCluster {
  readonly addresses: string[] = [];
  /** Index in `addresses` of the leader; -1: no leader. */
  leaderIndex = 0;
  /** When false, keepalives get no answer (a partitioned leader, as the client sees it). */
  answerKeepAlives = true;
  /** When true, no server answers anything (a cluster that is down, as the client sees it). */
  silent = false;
  /** When set, the leader answers every append with this error (a filewriter that is down). */
  appendError: ErrorMessage | null = null;
  /** Every (kind, session, request id) the leader received, in order. */
  readonly received: { kind: string; sessionId: number; requestId: number; callId: number }[] = [];
  readonly cancelled: number[] = [];
  #servers: grpc.Server[] = [];
  #frontends: ClientFrontend[] = [];
  #calls = new Set<Call>();
  #sessionsByOpenKey = new Map<string, number>();
  #nextSessionId = 1;
  #nextToken = 100;
  #holders = new Map<string, { sessionId: number; token: number }>();
  #queues = new Map<string, Waiter[]>();
  #results = new Map<string, Omit<StreamResponse, "callId">>();

  /** Starts `count` fake servers on free loopback ports. */
  static async start(count: number): Promise<FakeCluster> {
    const cluster = new FakeCluster();
    const path = fileURLToPath(new URL("../../proto/dlock/v1/lock.proto", import.meta.url));
    const definition = protoLoader.loadSync(path, protoLoaderOptions);
    const service = definition["dlock.v1.Lock"] as grpc.ServiceDefinition;
    for (let index = 0; index < count; index++) {
      const server = new grpc.Server();
      const notImplemented = (_call: unknown, callback: grpc.sendUnaryData<unknown>) =>
        callback({ code: grpc.status.UNIMPLEMENTED });
      server.addService(service, {
        OpenSession: notImplemented,
        CloseSession: notImplemented,
        Acquire: notImplemented,
        Release: notImplemented,
        Append: notImplemented,
        Status: notImplemented,
        KeepAlive: (call: grpc.ServerDuplexStream<unknown, unknown>) => call.end(),
        Stream: (call: Call) => cluster.#serve(index, call),
      });
      const grpcPort = await new Promise<number>((resolve, reject) =>
        server.bindAsync(
          "127.0.0.1:0",
          grpc.ServerCredentials.createInsecure(),
          (error, bound) => error ? reject(error) : resolve(bound),
        )
      );
      // The same front door as the real server: native streams and piped gRPC.
      const frontend = new ClientFrontend({
        hostname: "127.0.0.1",
        port: 0,
        grpcAddress: { hostname: "127.0.0.1", port: grpcPort },
        logger: silentLogger,
        openStream: (peer) => cluster.#openNative(index, peer),
      });
      cluster.#servers.push(server);
      cluster.#frontends.push(frontend);
      cluster.addresses.push(`127.0.0.1:${frontend.port}`);
    }
    return cluster;
  }

  /** Moves leadership to `index` and breaks every open stream (as a crash would). */
  moveLeader(index: number): void {
    this.leaderIndex = index;
    for (const call of this.#calls) call.destroy(new Error("leader moved"));
    this.#calls.clear();
  }

  /** Releases `lock` from whoever holds it (as the holder's release would). */
  holderOf(lock: string): { sessionId: number; token: number } | undefined {
    return this.#holders.get(lock);
  }

  /** Stops every server. */
  async stop(): Promise<void> {
    for (const call of this.#calls) call.destroy();
    for (const frontend of this.#frontends) frontend.close();
    await Promise.all(this.#servers.map((server) =>
      new Promise<void>((resolve) => {
        server.forceShutdown();
        resolve();
      })
    ));
  }

  #openNative(index: number, peer: StreamPeer): StreamSession {
    const call = new NativeCall(peer, () => peer.end());
    this.#serve(index, call as unknown as Call);
    return {
      receive: (request) => call.emit("data", request),
      close: () => call.emit("end"),
    };
  }

  #serve(index: number, call: Call): void {
    this.#calls.add(call);
    call.on("error", () => this.#calls.delete(call));
    call.on("end", () => {
      this.#calls.delete(call);
      call.end();
    });
    call.on("data", (request: StreamRequest) => {
      if (this.silent) return;
      const reply = (response: Omit<StreamResponse, "callId">) =>
        call.write({ callId: request.callId, ...response });
      if ("status" in request && request.status) {
        reply({
          status: {
            self: this.addresses[index] ?? "",
            role: index === this.leaderIndex ? "leader" : "follower",
            leader: this.addresses[this.leaderIndex] ?? "",
            term: 1,
            commitIndex: 1,
            appliedIndex: 1,
            members: this.addresses.map((address, i) => ({
              address,
              isLeader: i === this.leaderIndex,
              isSelf: i === index,
            })),
            sessions: [],
            locks: [],
            lockCount: this.#holders.size,
            sessionCount: this.#sessionsByOpenKey.size,
            filewriter: "",
          },
        });
        return;
      }
      if (index !== this.leaderIndex) {
        const leader = this.addresses[this.leaderIndex] ?? "";
        reply({ error: { reason: "NOT_LEADER", message: "not the leader", leader } });
        return;
      }
      this.#lead(call, request, reply);
    });
  }

  #lead(call: Call, request: StreamRequest, reply: (r: Omit<StreamResponse, "callId">) => void) {
    const record = (kind: string, sessionId: number, requestId: number) =>
      this.received.push({ kind, sessionId, requestId, callId: request.callId });
    if ("openSession" in request) {
      const key = request.openSession.openKey;
      const sessionId = this.#sessionsByOpenKey.get(key) ?? this.#nextSessionId++;
      this.#sessionsByOpenKey.set(key, sessionId);
      reply({ openSession: { sessionId, ttlMs: request.openSession.ttlMs || 10_000 } });
    } else if ("keepAlive" in request) {
      record("keepAlive", request.keepAlive.sessionId, 0);
      if (this.answerKeepAlives) {
        reply({ keepAlive: { sessionId: request.keepAlive.sessionId, ttlMs: 0, error: null } });
      }
    } else if ("acquire" in request) {
      const { sessionId, lock, requestId, wait } = request.acquire;
      record("acquire", sessionId, requestId);
      const key = `${sessionId}/${requestId}`;
      const done = this.#results.get(key);
      if (done !== undefined) return reply(done);
      const queue = this.#queues.get(lock) ?? [];
      const queued = queue.find((w) => w.sessionId === sessionId && w.requestId === requestId);
      if (queued !== undefined) {
        queued.call = call; // A retry re-attaches to the waiter it already has.
        queued.callId = request.callId;
        return;
      }
      const holder = this.#holders.get(lock);
      if (holder === undefined || holder.sessionId === sessionId) {
        const token = holder?.token ?? this.#nextToken++;
        this.#holders.set(lock, { sessionId, token });
        const response = { acquire: { acquired: true, token } };
        this.#results.set(key, response);
        return reply(response);
      }
      if (!wait) return reply({ acquire: { acquired: false, token: 0 } });
      queue.push({ sessionId, requestId, call, callId: request.callId });
      this.#queues.set(lock, queue);
    } else if ("release" in request) {
      const { sessionId, lock, requestId } = request.release;
      record("release", sessionId, requestId);
      const holder = this.#holders.get(lock);
      if (holder?.sessionId !== sessionId) {
        return reply({ error: { reason: "NOT_HOLDER", message: "not the holder", leader: "" } });
      }
      this.#holders.delete(lock);
      this.#grantNext(lock);
      reply({ release: { released: true } });
    } else if ("cancel" in request) {
      this.cancelled.push(request.cancel.callId);
      for (const [lock, queue] of this.#queues) {
        const at = queue.findIndex((w) => w.call === call && w.callId === request.cancel.callId);
        if (at < 0) continue;
        const [waiter] = queue.splice(at, 1);
        this.#queues.set(lock, queue);
        waiter?.call.write({
          callId: waiter.callId,
          error: { reason: "CANCELLED", message: "cancelled", leader: "" },
        });
      }
    } else if ("append" in request) {
      record("append", request.append.sessionId, 0);
      if (this.appendError !== null) return reply({ error: this.appendError });
      reply({ append: { offset: 0, duplicate: false } });
    } else if ("closeSession" in request) {
      const sessionId = request.closeSession.sessionId;
      record("closeSession", sessionId, request.closeSession.requestId);
      const released: string[] = [];
      for (const [lock, holder] of [...this.#holders]) {
        if (holder.sessionId !== sessionId) continue;
        this.#holders.delete(lock);
        released.push(lock);
        this.#grantNext(lock);
      }
      reply({ closeSession: { released } });
    }
  }

  #grantNext(lock: string): void {
    const next = this.#queues.get(lock)?.shift();
    if (next === undefined) return;
    const token = this.#nextToken++;
    this.#holders.set(lock, { sessionId: next.sessionId, token });
    const response = { acquire: { acquired: true, token } };
    this.#results.set(`${next.sessionId}/${next.requestId}`, response);
    next.call.write({ callId: next.callId, ...response });
  }
}

/** A received request, as recorded by the fake leader. */
export type Received = { kind: string; sessionId: number; requestId: number; callId: number };

/** Drives a {@link FakeCluster} running in a Worker (`_fake_cluster_worker.ts`). */
export class FakeClusterWorker {
  readonly addresses: string[];
  readonly #worker: Worker;
  readonly #pending = new Map<number, (reply: { result?: unknown; error?: string }) => void>();
  #nextId = 1;

  private constructor(worker: Worker) {
    this.#worker = worker;
    this.addresses = [];
    worker.onmessage = (event: MessageEvent<{ id: number; result?: unknown; error?: string }>) => {
      const resolve = this.#pending.get(event.data.id);
      this.#pending.delete(event.data.id);
      resolve?.(event.data);
    };
  }

  /** Starts `count` fake servers in a new Worker. */
  static async start(count: number): Promise<FakeClusterWorker> {
    const worker = new Worker(new URL("./_fake_cluster_worker.ts", import.meta.url), {
      type: "module",
    });
    const handle = new FakeClusterWorker(worker);
    const addresses = await handle.#request("start", { count }) as string[];
    handle.addresses.push(...addresses);
    return handle;
  }

  /** Sets the leader index (-1: none), whether keepalives (or anything) are answered. */
  async set(
    knobs: {
      leaderIndex?: number;
      answerKeepAlives?: boolean;
      silent?: boolean;
      appendError?: ErrorMessage | null;
    },
  ): Promise<void> {
    await this.#request("set", knobs);
  }

  /** Moves leadership and breaks every open stream. */
  async moveLeader(index: number): Promise<void> {
    await this.#request("moveLeader", { index });
  }

  /** Every request the leader received, in order. */
  async received(): Promise<Received[]> {
    return await this.#request("received", {}) as Received[];
  }

  /** The call ids of every CancelRequest received. */
  async cancelled(): Promise<number[]> {
    return await this.#request("cancelled", {}) as number[];
  }

  /** Stops the servers and the Worker. */
  async stop(): Promise<void> {
    try {
      await this.#request("stop", {});
    } finally {
      this.#worker.terminate();
    }
  }

  #request(op: string, args: Record<string, unknown>): Promise<unknown> {
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`the fake cluster did not answer ${op} within 10 s`));
      }, 10_000);
      this.#pending.set(id, (reply) => {
        clearTimeout(timer);
        if (reply.error !== undefined) reject(new Error(reply.error));
        else resolve(reply.result);
      });
      this.#worker.postMessage({ id, op, args });
    });
  }
}

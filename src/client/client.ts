/**
 * The dlock client: one session, kept alive in the background, and the locks it holds.
 * Every operation travels on one multiplexed stream to the leader: the native protocol
 * by default (`_native_connection.ts`), or the gRPC `Stream` RPC with
 * `transport: "grpc"` (see `_router.ts` for leader following and retries).
 *
 * Lease rule (why a lock's `signal` aborts): the server expires a session `ttlMs` after
 * the last keepalive it received, and a keepalive is received after it was sent. So
 * while `now < sentAt(last confirmed keepalive) + ttlMs` the session is certainly
 * alive on the server (clock rates agree to far better than the margin). The client
 * sends a keepalive every `ttlMs / 3` and, if none is confirmed for
 * `ttlMs - ttlMs / 4` after the send time of the last confirmed one, presumes the
 * session lost: it aborts `client.signal` and every lock's `signal`, fails pending and
 * later operations with SessionPresumedLostError (a SessionExpiredError), and keeps
 * asking the cluster to close the session (bounded: see `#closeLostSession`), since the
 * cluster may still hold it and its locks. The quarter-TTL margin absorbs scheduling delays of this process;
 * a process paused for longer than that (SIGSTOP, GC, swap) is exactly what fencing
 * tokens at the storage are for.
 *
 * @module
 */
import {
  DlockError,
  InvalidArgumentError,
  NotHolderError,
  SessionExpiredError,
  SessionPresumedLostError,
  TimeoutError,
} from "../errors.ts";
import { limits } from "../limits.ts";
import type { Connection, PendingCall, TransportKind } from "./_connection.ts";
import { abortError } from "./_errors.ts";
import {
  type AcquireResponse,
  type StatusResponse,
  type StreamOperation,
  summaryStatus,
} from "./_proto.ts";
import { type ClientLogger, type InvokeResult, Router, silentLogger } from "./_router.ts";

export type { ClientLogger } from "./_router.ts";
export type { TransportKind } from "./_connection.ts";
export type { LockInfo, Member, SessionInfo, StatusResponse, Waiter } from "./_proto.ts";

/** Options of {@link connect}. */
export type ConnectOptions = {
  /** Client name shown in status (1–256 UTF-8 bytes). */
  name: string;
  /** Session TTL in milliseconds (1000–300000); 0 or absent: the server default. */
  ttlMs?: number;
  /** Diagnostics (leader changes, retries); silent by default. */
  logger?: ClientLogger;
  /** Bound on the total retry time of one operation (default 15 s). */
  retryTimeoutMs?: number;
  /**
   * Bound on opening the session in {@link connect} (default: `retryTimeoutMs`). A caller
   * with a deadline of its own (`dlock lock --timeout`) bounds the connect by it without
   * also shortening every later operation (a release after a leader change).
   */
  connectTimeoutMs?: number;
  /** Bound on one attempt of a non-blocking operation before failing over (default 5 s). */
  attemptTimeoutMs?: number;
  /**
   * Protocol to the servers: "native" (default; length-prefixed protobuf over TCP on the
   * same port) or "grpc" (the `dlock.v1.Lock/Stream` RPC). Same messages, same semantics.
   */
  transport?: TransportKind;
};

/** Options of {@link DlockClient.acquire}. */
export type AcquireOptions = {
  /** Give up after this long with TimeoutError; absent or 0: wait indefinitely. */
  timeoutMs?: number;
  /** Cancels the acquire: it rejects with the signal's reason (an AbortError by default). */
  signal?: AbortSignal;
};

/** Options of {@link LockHandle.append}. */
export type AppendOptions = {
  /** Idempotency key; a repeated id is appended once. Default: a fresh UUID per call. */
  requestId?: string;
};

/** Where an append landed. */
export type AppendResult = {
  /** Byte offset of the appended data in the file. */
  offset: number;
  /** True when this request id had already been appended (nothing appended now). */
  duplicate: boolean;
};

/** Options of {@link fetchStatus}. */
export type StatusOptions = {
  /** Most locks to list (default 1000). */
  locksLimit?: number;
  /** Bound on the whole call including retries (default 10 s). */
  timeoutMs?: number;
  logger?: ClientLogger;
  /** Protocol to the servers (default "native"); see {@link ConnectOptions.transport}. */
  transport?: TransportKind;
};

const defaultRetryTimeoutMs = 15_000;
/** See limits.ts: the leader's filewriter call is bounded below it. */
const defaultAttemptTimeoutMs = limits.clientAttemptTimeoutMsDefault;
/** How long after the server-side acquire timeout the client stops waiting by itself. */
const acquireTimeoutGraceMs = 1_000;
/** How long the client keeps trying to close a session it gave up on (see #closeLostSession). */
const lostSessionCloseMaxMs = 10 * 60_000;
/** The pause between rounds of those tries: doubling from `initial` up to `max`. */
const lostSessionClosePauseMs = { initial: 500, max: 5_000 };

type ClientState = "open" | "lost" | "closing" | "closed";

/** The attempt in flight of one acquire, and whether its caller gave up on it. */
type AcquireControl = {
  current: { connection: Connection; call: PendingCall } | null;
  abandoned: boolean;
};

/** What a LockHandle may ask of its client (kept off the public surface). */
type LockOperations = {
  release(handle: LockHandle): Promise<void>;
  append(
    handle: LockHandle,
    file: string,
    data: string | Uint8Array,
    options: AppendOptions,
  ): Promise<AppendResult>;
};

/**
 * A held lock. `token` is the fencing token of the grant; pass it to any storage the
 * lock protects. `signal` aborts when the lock is known or presumed lost (session
 * expired, keepalives unconfirmed, or the server said this session is not the holder):
 * stop using the lock then.
 *
 * @example
 * ```ts
 * await using lock = await client.acquire("jobs/42");
 * await lock.append("results", `done by token ${lock.token}\n`);
 * ```
 */
export class LockHandle implements AsyncDisposable {
  /** The lock's name. */
  readonly name: string;
  /** Fencing token of this grant: strictly increasing across all grants. */
  readonly token: number;
  readonly #controller = new AbortController();
  readonly #operations: LockOperations;
  #released = false;

  /** @internal Created by DlockClient only. */
  constructor(name: string, token: number, operations: LockOperations) {
    this.name = name;
    this.token = token;
    this.#operations = operations;
  }

  /** Aborts when the lock is known or presumed lost. */
  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /** True after release() (or the session's close) succeeded. */
  get released(): boolean {
    return this.#released;
  }

  /**
   * Releases the lock. Idempotent.
   * @throws {NotHolderError} when the lock was lost before the release.
   */
  release(): Promise<void> {
    return this.#operations.release(this);
  }

  /**
   * Appends `data` to `file` in the fenced storage, through the lock service: the
   * leader checks that this session holds the lock with this token, then forwards the
   * write with the token as fence.
   * @throws {NotHolderError} when the lock is not held (released or lost).
   * @throws {StaleFenceError} when the storage has seen a newer token for the file.
   */
  append(
    file: string,
    data: string | Uint8Array,
    options: AppendOptions = {},
  ): Promise<AppendResult> {
    return this.#operations.append(this, file, data, options);
  }

  /** Releases at the end of an `await using` scope (errors of a lost lock are ignored). */
  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#released || this.signal.aborted) return;
    await this.release();
  }

  /** @internal */
  markReleased(): void {
    this.#released = true;
  }

  /** @internal */
  markLost(reason: Error): void {
    if (!this.#controller.signal.aborted) this.#controller.abort(reason);
  }
}

/**
 * A session with a dlock cluster. Create with {@link connect}; close with
 * {@link DlockClient.close} or `await using`.
 */
export class DlockClient implements AsyncDisposable {
  /** Session id assigned by the cluster. */
  readonly sessionId: number;
  /** Session TTL granted by the cluster, in milliseconds. */
  readonly ttlMs: number;
  /** Client name given to connect(). */
  readonly name: string;
  readonly #router: Router;
  readonly #logger: ClientLogger;
  readonly #retryTimeoutMs: number;
  readonly #attemptTimeoutMs: number;
  readonly #controller = new AbortController();
  readonly #stopController = new AbortController();
  /** Stops the background close of a lost session (close() does). */
  readonly #backgroundCloseStop = new AbortController();
  readonly #locks = new Map<string, LockHandle>();
  readonly #operations: LockOperations;
  #state: ClientState = "open";
  #nextRequestId = 1;
  #lastConfirmedMs: number;
  #watchdog: ReturnType<typeof setInterval>;
  #keepAliveLoop: Promise<void>;
  #closing: Promise<void> | null = null;
  #backgroundClose: Promise<void> | null = null;

  /** @internal Use connect(). */
  constructor(
    router: Router,
    session: { sessionId: number; ttlMs: number; confirmedAtMs: number },
    options: ConnectOptions,
  ) {
    this.#router = router;
    this.sessionId = session.sessionId;
    this.ttlMs = session.ttlMs;
    this.name = options.name;
    this.#logger = options.logger ?? silentLogger;
    this.#retryTimeoutMs = options.retryTimeoutMs ?? defaultRetryTimeoutMs;
    this.#attemptTimeoutMs = options.attemptTimeoutMs ?? defaultAttemptTimeoutMs;
    this.#lastConfirmedMs = session.confirmedAtMs;
    this.#operations = {
      release: (handle) => this.#release(handle),
      append: (handle, file, data, appendOptions) =>
        this.#append(handle, file, data, appendOptions),
    };
    this.#watchdog = setInterval(() => this.#checkLease(), Math.min(100, this.ttlMs / 20));
    this.#keepAliveLoop = this.#keepAlive();
  }

  /** Aborts when the session is known or presumed lost (never on a deliberate close). */
  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /** The server currently believed to be the leader. */
  get leader(): string {
    return this.#router.target;
  }

  /** Locks this client currently holds, by name. */
  get locks(): ReadonlyMap<string, LockHandle> {
    return this.#locks;
  }

  /**
   * Waits for the lock (FIFO) and returns its handle. Asking for a lock this session
   * already holds returns the current grant.
   * @throws {TimeoutError} when `timeoutMs` passes first.
   * @throws {SessionExpiredError} when the session is lost meanwhile.
   * @throws {InvalidArgumentError} for an invalid lock name or timeout.
   * @throws the signal's reason (an AbortError by default) when `signal` aborts.
   */
  async acquire(name: string, options: AcquireOptions = {}): Promise<LockHandle> {
    const handle = await this.#acquire(name, true, options);
    if (handle === null) {
      throw new DlockError("UNAVAILABLE", "The server declined a waiting acquire");
    }
    return handle;
  }

  /** Takes the lock if it is free (or already ours); null when another session holds it. */
  tryAcquire(name: string, options: { signal?: AbortSignal } = {}): Promise<LockHandle | null> {
    return this.#acquire(name, false, options);
  }

  /** Cluster status from the leader (members, term, sessions, locks). */
  async status(options: { locksLimit?: number } = {}): Promise<StatusResponse> {
    const { response } = await this.#router.invoke(
      () => ({ status: { locksLimit: options.locksLimit ?? 0 } }),
      this.#plainInvokeOptions(false),
    );
    const status = response.status;
    if (status === null || status === undefined) throw mismatch("status");
    this.#router.learn(status);
    return status;
  }

  /**
   * Closes the session: the cluster releases every lock it holds and drops its
   * waiters. Idempotent. Pending acquires reject.
   * @throws {DlockError} UNAVAILABLE when no leader could be reached (the session then
   * expires after its TTL).
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  /** Closes at the end of an `await using` scope. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async #acquire(
    name: string,
    wait: boolean,
    options: AcquireOptions,
  ): Promise<LockHandle | null> {
    this.#assertOpen("acquire");
    options.signal?.throwIfAborted();
    const timeoutMs = options.timeoutMs ?? 0;
    if (!Number.isInteger(timeoutMs) || timeoutMs < 0 || timeoutMs > limits.acquireTimeoutMsMax) {
      throw new InvalidArgumentError(
        `Cannot acquire as the timeout must be a whole number of milliseconds from 0 to ${limits.acquireTimeoutMsMax}: received ${timeoutMs}`,
      );
    }
    const existing = this.#locks.get(name);
    if (existing !== undefined && !existing.signal.aborted && !existing.released) return existing;
    const requestId = this.#nextRequestId++;
    const deadlineMs = wait && timeoutMs > 0 ? performance.now() + timeoutMs : null;
    const control: AcquireControl = { current: null, abandoned: false };
    const remote = this.#router.invoke(
      () => ({
        acquire: {
          sessionId: this.sessionId,
          lock: name,
          requestId,
          wait,
          timeoutMs: deadlineMs === null
            ? 0
            : Math.max(1, Math.ceil(deadlineMs - performance.now())),
        },
      }),
      {
        action: `acquire ${name}`,
        attemptTimeoutMs: wait ? null : this.#attemptTimeoutMs,
        deadlineMs: wait ? null : performance.now() + this.#retryTimeoutMs,
        beforeAttempt: () => this.#assertOpen("acquire"),
        onSent: (connection, call) => {
          control.current = { connection, call };
          // Abandoned while no attempt was in flight: cancel the re-issued one at once.
          if (control.abandoned) connection.cancel(call.callId);
        },
      },
    );
    return await this.#awaitGrant(name, remote, control, options, timeoutMs, deadlineMs !== null);
  }

  /**
   * Settles an acquire with the first of: the server's answer, the caller's signal, or
   * the client-side timeout (the server's, plus a grace). An abandoned acquire is
   * cancelled on the server; if the server granted it first, the grant is given back.
   */
  #awaitGrant(
    name: string,
    remote: Promise<InvokeResult>,
    control: AcquireControl,
    options: AcquireOptions,
    timeoutMs: number,
    timed: boolean,
  ): Promise<LockHandle | null> {
    return new Promise<LockHandle | null>((resolve, reject) => {
      let settled = false;
      const finish = (settle: () => void) => {
        if (settled) return;
        settled = true;
        options.signal?.removeEventListener("abort", onAbort);
        if (timer !== undefined) clearTimeout(timer);
        settle();
      };
      const abandon = (error: Error) => {
        control.abandoned = true;
        control.current?.connection.cancel(control.current.call.callId);
        finish(() => reject(error));
      };
      const onAbort = () => abandon(abortError(options.signal as AbortSignal));
      options.signal?.addEventListener("abort", onAbort, { once: true });
      const timer = timed
        ? setTimeout(
          () => abandon(new TimeoutError(`Cannot acquire ${name} within ${timeoutMs} ms`)),
          timeoutMs + acquireTimeoutGraceMs,
        )
        : undefined;
      remote.then(
        ({ response }) => {
          const grant = response.acquire;
          if (grant === null || grant === undefined) {
            return finish(() => reject(mismatch("acquire")));
          }
          if (settled) {
            // Cancelled or timed out here, but granted there first: give it back.
            if (grant.acquired) void this.#releaseQuietly(name, grant.token);
            return;
          }
          finish(() => {
            try {
              resolve(this.#adopt(name, grant));
            } catch (error) {
              reject(error);
            }
          });
        },
        (error: unknown) => {
          this.#noticeSessionError(error);
          finish(() => reject(error));
        },
      );
    });
  }

  #adopt(name: string, grant: AcquireResponse): LockHandle | null {
    if (!grant.acquired) return null;
    if (this.#state !== "open") {
      throw new SessionExpiredError(`Cannot use the grant of ${name} as the session is lost`);
    }
    const existing = this.#locks.get(name);
    if (existing !== undefined && existing.token === grant.token && !existing.released) {
      return existing;
    }
    const handle = new LockHandle(name, grant.token, this.#operations);
    this.#locks.set(name, handle);
    return handle;
  }

  async #release(handle: LockHandle): Promise<void> {
    if (handle.released) return;
    this.#checkLease();
    if (handle.signal.aborted) {
      throw new NotHolderError(`Cannot release ${handle.name} as the lock was lost`, {
        cause: handle.signal.reason,
      });
    }
    this.#assertOpen("release");
    const requestId = this.#nextRequestId++;
    try {
      const { response } = await this.#router.invoke(
        () => ({
          release: { sessionId: this.sessionId, lock: handle.name, requestId, token: handle.token },
        }),
        { ...this.#plainInvokeOptions(true), action: `release ${handle.name}` },
      );
      if (response.release === null || response.release === undefined) throw mismatch("release");
      if (!response.release.released) {
        throw new NotHolderError(`Cannot release ${handle.name} as this session does not hold it`);
      }
      handle.markReleased();
      if (this.#locks.get(handle.name) === handle) this.#locks.delete(handle.name);
    } catch (error) {
      this.#noticeSessionError(error);
      if (error instanceof NotHolderError) this.#forget(handle, error);
      throw error;
    }
  }

  async #append(
    handle: LockHandle,
    file: string,
    data: string | Uint8Array,
    options: AppendOptions,
  ): Promise<AppendResult> {
    if (handle.released) {
      throw new NotHolderError(`Cannot append to ${file} as the lock ${handle.name} was released`);
    }
    this.#checkLease();
    if (handle.signal.aborted) {
      throw new NotHolderError(`Cannot append to ${file} as the lock ${handle.name} was lost`, {
        cause: handle.signal.reason,
      });
    }
    this.#assertOpen("append");
    const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
    const requestId = options.requestId ?? crypto.randomUUID();
    try {
      const { response } = await this.#router.invoke(
        () => ({
          append: {
            sessionId: this.sessionId,
            lock: handle.name,
            token: handle.token,
            file,
            data: bytes,
            requestId,
          },
        }),
        { ...this.#plainInvokeOptions(true), action: `append to ${file}` },
      );
      const result = response.append;
      if (result === null || result === undefined) throw mismatch("append");
      return { offset: result.offset, duplicate: result.duplicate };
    } catch (error) {
      this.#noticeSessionError(error);
      if (error instanceof NotHolderError) {
        const lost = new NotHolderError(
          `Cannot append to ${file} as the lock ${handle.name} is not held by this session (lost or released): ${error.message}`,
          { cause: error },
        );
        this.#forget(handle, lost);
        throw lost;
      }
      throw error;
    }
  }

  async #releaseQuietly(name: string, token: number): Promise<void> {
    if (this.#state !== "open") return;
    const requestId = this.#nextRequestId++;
    try {
      await this.#router.invoke(
        () => ({ release: { sessionId: this.sessionId, lock: name, requestId, token } }),
        this.#plainInvokeOptions(true),
      );
    } catch (error) {
      this.#logger.warn(`could not give back the abandoned grant of ${name}: ${String(error)}`);
    }
  }

  #forget(handle: LockHandle, reason: Error): void {
    handle.markLost(reason);
    if (this.#locks.get(handle.name) === handle) this.#locks.delete(handle.name);
  }

  #plainInvokeOptions(requireOpen: boolean) {
    return {
      attemptTimeoutMs: this.#attemptTimeoutMs,
      deadlineMs: performance.now() + this.#retryTimeoutMs,
      beforeAttempt: requireOpen ? () => this.#assertOpen("send") : () => {},
    };
  }

  #assertOpen(action: string): void {
    // Check the lease now, not only on the watchdog's next turn: a process resumed after a
    // pause (SIGSTOP, a long GC) must not send one more operation on a lease it lost.
    this.#checkLease();
    if (this.#state === "open") return;
    if (this.#state === "lost") {
      // The same class as the loss itself: a session the client gave up on (which the
      // cluster may still hold) stays a SessionPresumedLostError for every later call.
      const reason = this.#controller.signal.reason;
      const message = `Cannot ${action} as session ${this.sessionId} was lost`;
      throw reason instanceof SessionPresumedLostError
        ? new SessionPresumedLostError(message, { cause: reason })
        : new SessionExpiredError(message, { cause: reason });
    }
    throw new SessionExpiredError(`Cannot ${action} as session ${this.sessionId} was closed`);
  }

  #noticeSessionError(error: unknown): void {
    if (error instanceof SessionExpiredError && this.#state === "open") {
      this.#lose("expired", error.message);
    }
  }

  async #keepAlive(): Promise<void> {
    const intervalMs = this.ttlMs / 3;
    const attemptTimeoutMs = this.ttlMs / 4;
    while (this.#state === "open") {
      const waitMs = this.#lastConfirmedMs + intervalMs - performance.now();
      if (waitMs > 0) await sleepUnless(waitMs, this.#stopController.signal);
      if (this.#state !== "open") return;
      let result: InvokeResult;
      try {
        result = await this.#router.invoke(
          () => ({ keepAlive: { sessionId: this.sessionId } }),
          {
            action: `keep session ${this.sessionId} alive`,
            attemptTimeoutMs,
            deadlineMs: this.#leaseEndMs(),
            beforeAttempt: () => this.#assertOpen("keep the session alive"),
          },
        );
      } catch (error) {
        if (this.#state !== "open") return;
        if (error instanceof SessionExpiredError) this.#lose("expired", error.message);
        else this.#lose("presumed", error instanceof Error ? error.message : String(error));
        return;
      }
      this.#lastConfirmedMs = Math.max(this.#lastConfirmedMs, result.sentAtMs);
    }
  }

  /** The monotonic time after which the session is presumed lost. */
  #leaseEndMs(): number {
    return this.#lastConfirmedMs + this.ttlMs - this.ttlMs / 4;
  }

  #checkLease(): void {
    const nowMs = performance.now();
    if (this.#state === "open" && nowMs >= this.#leaseEndMs()) {
      const sinceMs = Math.round(nowMs - this.#lastConfirmedMs);
      this.#lose(
        "presumed",
        `the last confirmed one was sent ${sinceMs} ms ago (cluster unreachable, or this process was paused)`,
      );
    }
  }

  #lose(kind: "expired" | "presumed", detail: string): void {
    if (this.#state !== "open") return;
    this.#state = "lost";
    const error = kind === "expired"
      ? new SessionExpiredError(`Session ${this.sessionId} expired: ${detail}`)
      : new SessionPresumedLostError(
        `Session ${this.sessionId} is presumed lost as no keepalive was confirmed within ${
          Math.round(this.ttlMs * 0.75)
        } ms: ${detail}`,
      );
    this.#logger.warn(error.message);
    this.#stopBackground();
    for (const handle of this.#locks.values()) handle.markLost(error);
    this.#locks.clear();
    this.#controller.abort(error);
    this.#router.resetConnection("session lost");
    if (kind === "presumed") {
      const closing = this.#closeLostSession();
      // Nobody may ever await it (close() does, bounded): it must never reject, as an
      // unhandled rejection would end the process.
      closing.catch(() => {});
      this.#backgroundClose = closing;
    }
  }

  /**
   * Closes a session this client gave up on, so its locks go to the next waiters now
   * rather than a whole TTL after the cluster is reachable again (a new leader gives every
   * session a fresh TTL, so a session is not expired during an outage, however long).
   * Keeps trying, with the same request id, in rounds of one retry bound with a pause
   * between them, until: the cluster closed it, the cluster says it is already gone
   * (SESSION_EXPIRED), the cluster refuses for another reason, {@link lostSessionCloseMaxMs}
   * passed, or close() stopped it. Never rejects.
   */
  async #closeLostSession(): Promise<void> {
    const stop = this.#backgroundCloseStop.signal;
    const giveUpAtMs = performance.now() + lostSessionCloseMaxMs;
    const requestId = this.#nextRequestId++;
    let pauseMs = lostSessionClosePauseMs.initial;
    for (let round = 1; !stop.aborted; round++) {
      try {
        await this.#router.invoke(
          () => ({ closeSession: { sessionId: this.sessionId, requestId } }),
          {
            action: `close session ${this.sessionId}`,
            attemptTimeoutMs: this.#attemptTimeoutMs,
            deadlineMs: Math.min(
              giveUpAtMs,
              performance.now() + Math.max(this.ttlMs, this.#retryTimeoutMs),
            ),
            beforeAttempt: () => {
              if (stop.aborted) throw new DlockError("CANCELLED", "the client was closed");
            },
          },
        );
        this.#logger.debug(`closed lost session ${this.sessionId} (round ${round})`);
        return;
      } catch (error) {
        if (error instanceof SessionExpiredError) return; // Already closed or expired.
        if (stop.aborted) return;
        const retryable = error instanceof DlockError && error.reason === "UNAVAILABLE";
        if (!retryable || performance.now() + pauseMs >= giveUpAtMs) {
          this.#logger.warn(
            `gave up closing lost session ${this.sessionId} after ${round} rounds (the cluster ` +
              `expires it a TTL after it last heard from it): ${String(error)}`,
          );
          return;
        }
        this.#logger.debug(
          `could not close lost session ${this.sessionId} yet (round ${round}): ${String(error)}`,
        );
      }
      // Not a reason to keep the process alive: an application that is otherwise done may
      // exit (the cluster then expires the session after its TTL).
      await sleepUnless(pauseMs, stop, { unref: true });
      pauseMs = Math.min(pauseMs * 2, lostSessionClosePauseMs.max);
    }
  }

  async #closeSessionOnServer(budgetMs: number): Promise<void> {
    const requestId = this.#nextRequestId++;
    try {
      await this.#router.invoke(
        () => ({ closeSession: { sessionId: this.sessionId, requestId } }),
        {
          action: `close session ${this.sessionId}`,
          attemptTimeoutMs: this.#attemptTimeoutMs,
          deadlineMs: performance.now() + budgetMs,
        },
      );
    } catch (error) {
      if (error instanceof SessionExpiredError) return;
      this.#logger.debug(`could not close session ${this.sessionId}: ${String(error)}`);
      throw error;
    }
  }

  #stopBackground(): void {
    clearInterval(this.#watchdog);
    this.#stopController.abort();
  }

  async #close(): Promise<void> {
    const wasOpen = this.#state === "open";
    if (wasOpen) this.#state = "closing";
    this.#stopBackground();
    let failure: unknown = null;
    try {
      if (wasOpen) await this.#closeSessionOnServer(this.#retryTimeoutMs);
      else if (this.#backgroundClose !== null) {
        // A lost session still being closed: give that one more retry bound, then stop it.
        const stop = this.#backgroundCloseStop;
        await sleepUnless(this.#retryTimeoutMs, stop.signal, {
          until: this.#backgroundClose,
        });
        stop.abort();
        this.#router.close(); // Ends an attempt in flight at once.
        await this.#backgroundClose;
      }
    } catch (error) {
      failure = error;
    }
    await this.#keepAliveLoop;
    for (const handle of this.#locks.values()) handle.markReleased();
    this.#locks.clear();
    this.#router.close();
    this.#state = "closed";
    if (failure !== null) throw failure;
  }
}

/**
 * Connects to a dlock cluster and opens a session. `addresses` may be any subset of
 * the cluster: the rest is discovered from Status; the client follows the leader.
 *
 * @example
 * ```ts
 * await using client = await connect(["127.0.0.1:5000"], { name: "worker-1", ttlMs: 10_000 });
 * await using lock = await client.acquire("jobs/42", { timeoutMs: 5_000 });
 * console.log(lock.token);
 * ```
 * @throws {InvalidArgumentError} for a bad name or TTL (from the server).
 * @throws {DlockError} UNAVAILABLE when no leader answers within `connectTimeoutMs`
 * (default `retryTimeoutMs`).
 */
export async function connect(
  addresses: readonly string[],
  options: ConnectOptions,
): Promise<DlockClient> {
  if (typeof options.name !== "string" || options.name.trim() === "") {
    throw new InvalidArgumentError(
      `Cannot open a session as the client name must not be empty: received ${
        JSON.stringify(options.name)
      }`,
    );
  }
  const ttlMs = options.ttlMs ?? 0;
  if (!Number.isInteger(ttlMs) || ttlMs < 0 || ttlMs > 0xffff_ffff) {
    throw new InvalidArgumentError(
      `Cannot open a session as the TTL must be a whole number of milliseconds: received ${ttlMs}`,
    );
  }
  const logger = options.logger ?? silentLogger;
  const router = new Router(addresses, logger, options.transport ?? "native");
  const retryTimeoutMs = options.retryTimeoutMs ?? defaultRetryTimeoutMs;
  const attemptTimeoutMs = options.attemptTimeoutMs ?? defaultAttemptTimeoutMs;
  try {
    const deadlineMs = performance.now() + (options.connectTimeoutMs ?? retryTimeoutMs);
    const discovered = await router.invoke(
      () => summaryStatus,
      { action: "open a session", attemptTimeoutMs, deadlineMs },
    );
    if (discovered.response.status) router.learn(discovered.response.status);
    const openKey = crypto.randomUUID();
    const operation: StreamOperation = {
      openSession: { clientName: options.name, ttlMs, openKey },
    };
    const opened = await router.invoke(
      () => operation,
      { action: "open a session", attemptTimeoutMs, deadlineMs },
    );
    const session = opened.response.openSession;
    if (session === null || session === undefined) throw mismatch("openSession");
    const grantedTtlMs = session.ttlMs > 0 ? session.ttlMs : (ttlMs || limits.sessionTtlMsDefault);
    logger.debug(
      `opened session ${session.sessionId} (ttl ${grantedTtlMs} ms) on ${router.target}`,
    );
    return new DlockClient(
      router,
      { sessionId: session.sessionId, ttlMs: grantedTtlMs, confirmedAtMs: opened.sentAtMs },
      options,
    );
  } catch (error) {
    router.close();
    throw error;
  }
}

/**
 * Reads the cluster status without opening a session (as `dlock status` does): from the
 * leader when one is known and answers in time, else from whichever member answered
 * (check `self` against `leader`: a member that is not the leader may be behind).
 * @throws {DlockError} UNAVAILABLE when no server answers within `timeoutMs`.
 */
export async function fetchStatus(
  addresses: readonly string[],
  options: StatusOptions = {},
): Promise<StatusResponse> {
  const router = new Router(
    addresses,
    options.logger ?? silentLogger,
    options.transport ?? "native",
  );
  const deadlineMs = performance.now() + (options.timeoutMs ?? 10_000);
  const ask = async () => {
    const { response } = await router.invoke(
      () => ({ status: { locksLimit: options.locksLimit ?? 0 } }),
      { action: "get the status", attemptTimeoutMs: 2_000, deadlineMs },
    );
    if (response.status === null || response.status === undefined) throw mismatch("status");
    return response.status;
  };
  try {
    const first = await ask();
    if (first.leader === "" || first.leader === first.self) return first;
    // Any member answers Status; only the leader's answer is current. Ask it once.
    router.learn(first);
    try {
      const fromLeader = await ask();
      return fromLeader.self === fromLeader.leader ? fromLeader : first;
    } catch {
      return first;
    }
  } finally {
    router.close();
  }
}

/** One member's own answer to a summary Status, or why it gave none. */
export type MemberProbe = {
  address: string;
  /** The member's own view (role, term, leader, commit index); null when it did not answer. */
  status: StatusResponse | null;
  /** Why it did not answer (when `status` is null). */
  problem: string;
};

/**
 * Asks every one of `addresses` for its own summary status, in parallel, each within
 * `timeoutMs` (as `etcdctl endpoint status` does): a member's role is only known from its
 * own live answer.
 */
export function probeMembers(
  addresses: readonly string[],
  options: { timeoutMs?: number; transport?: TransportKind } = {},
): Promise<MemberProbe[]> {
  const timeoutMs = options.timeoutMs ?? 2_000;
  return Promise.all(addresses.map(async (address): Promise<MemberProbe> => {
    const router = new Router([address], silentLogger, options.transport ?? "native");
    try {
      const { response } = await router.invoke(() => summaryStatus, {
        action: `get the status of ${address}`,
        failure: "it did not answer",
        attemptTimeoutMs: timeoutMs,
        deadlineMs: performance.now() + timeoutMs,
      });
      if (response.status === null || response.status === undefined) throw mismatch("status");
      return { address, status: response.status, problem: "" };
    } catch (error) {
      return {
        address,
        status: null,
        problem: lastFailure(error),
      };
    } finally {
      router.close();
    }
  }));
}

/** The last attempt's failure ("Connection refused"): it says more than the retry summary. */
function lastFailure(error: unknown): string {
  const last = error instanceof DlockError && error.cause instanceof Error ? error.cause : error;
  return last instanceof Error ? last.message : String(last);
}

function mismatch(expected: string): DlockError {
  return new DlockError(
    "UNAVAILABLE",
    `Cannot read the server's answer as it does not carry the expected ${expected} result`,
  );
}

/**
 * Resolves after `durationMs`, or at once when `signal` aborts or `options.until` settles.
 * `unref`: the timer alone does not keep the process alive.
 */
function sleepUnless(
  durationMs: number,
  signal: AbortSignal,
  options: { unref?: boolean; until?: Promise<unknown> } = {},
): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, durationMs);
    if (options.unref === true) Deno.unrefTimer(timer);
    signal.addEventListener("abort", done, { once: true });
    options.until?.then(done, done);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
  });
}

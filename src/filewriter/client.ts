/**
 * HTTP client of the filewriter's versioned API, for the lock servers (which forward
 * `Append`) and for applications writing directly with their fencing token.
 *
 * Appends are retry-safe: every append carries a request id (generated when the caller
 * gives none), and the filewriter applies a request id once per file, so the client
 * retries network failures and 5xx answers with the same id.
 *
 * @example
 * ```ts
 * import { FilewriterClient } from "./client.ts";
 * const files = new FilewriterClient("localhost:8080");
 * const { offset } = await files.append({ file: "log", lock: "L", token: 7, requestId: "r1", data: "hi\n" });
 * const content = await files.read("log"); // Uint8Array | null
 * ```
 *
 * @module
 */
import { limits } from "../limits.ts";
import {
  DlockError,
  InvalidArgumentError,
  ResourceExhaustedError,
  StaleFenceError,
} from "../errors.ts";

/** The filewriter could not be reached or failed (5xx); safe to retry with the same request id. */
export class FilewriterUnavailableError extends DlockError {
  /** Attempts made before giving up (0: not counted, e.g. one 5xx answer). */
  readonly attempts: number;
  /** The last failure alone, without the surrounding sentence (e.g. "fetch failed"). */
  readonly problem: string;
  /** True when no attempt got an HTTP answer at all (nothing listening, DNS, timeout). */
  readonly unreachable: boolean;
  constructor(
    message: string,
    options?: ErrorOptions & { attempts?: number; problem?: string; unreachable?: boolean },
  ) {
    super("UNAVAILABLE", message, options);
    this.name = "FilewriterUnavailableError";
    this.attempts = options?.attempts ?? 0;
    this.problem = options?.problem ?? message;
    this.unreachable = options?.unreachable ?? false;
  }
}

/** A stale-fence refusal, with what the filewriter had accepted. */
export class FilewriterStaleFenceError extends StaleFenceError {
  /** Highest token the filewriter accepted for the file. */
  readonly highestToken: number;
  constructor(message: string, highestToken: number) {
    super(message);
    this.name = "FilewriterStaleFenceError";
    this.highestToken = highestToken;
  }
}

/** One append. */
export type FilewriterAppendRequest = {
  file: string;
  lock: string;
  /** Fencing token; a bigint (a proto uint64) must be at most `Number.MAX_SAFE_INTEGER`. */
  token: number | bigint;
  /** Idempotency key; generated (a random UUID) when absent or "". Reuse it to retry. */
  requestId?: string;
  /** Bytes, or a string sent as UTF-8. */
  data: Uint8Array | string;
};

/** What the filewriter answered to an append. */
export type FilewriterAppendResult = {
  /** Offset of the data in the file. */
  offset: number;
  /** Bytes appended. */
  size: number;
  /** True when the request id had been applied before (nothing appended now). */
  duplicate: boolean;
  /** Token the append was (originally) accepted with. */
  token: number;
  /** The request id used. */
  requestId: string;
};

/** What the filewriter knows about a file. */
export type FilewriterMeta = { highestToken: number; lock: string; size: number; appends: number };

/** Options of {@link FilewriterClient}. */
export type FilewriterClientOptions = {
  /** Per-attempt timeout (default 10 s). */
  timeoutMs?: number;
  /** Attempts for network failures and 5xx (default 3, at least 1). */
  attemptsMax?: number;
  /** Pause before the second attempt, doubled each time (default 100 ms). */
  retryDelayMs?: number;
  /**
   * Bound on a whole call, every attempt and pause included (default: none). An attempt
   * gets at most what is left of it, and no attempt starts once it has passed.
   */
  callTimeoutMs?: number;
};

/**
 * The options a lock server forwards appends with: the whole call stays within
 * `limits.filewriterCallMsMax`, below the client's attempt timeout (asserted in
 * limits.ts), so a hung filewriter is reported as the filewriter failing, not as a
 * leader that did not answer.
 */
export const forwardingFilewriterOptions: FilewriterClientOptions = {
  timeoutMs: limits.filewriterAttemptMsMax,
  attemptsMax: 3,
  retryDelayMs: 100,
  callTimeoutMs: limits.filewriterCallMsMax,
};

/** Normalises `localhost:8080` or `http://host:port/` to `http://host:port`. */
export function normaliseBaseUrl(baseUrl: string): string {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(baseUrl) ? baseUrl : `http://${baseUrl}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw new InvalidArgumentError(
      `Cannot use the filewriter address as it is not a URL: received ${JSON.stringify(baseUrl)}`,
    );
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new InvalidArgumentError(
      `Cannot use the filewriter address as it must be http(s): received ${
        JSON.stringify(baseUrl)
      }`,
    );
  }
  return `${url.protocol}//${url.host}${url.pathname.replace(/\/+$/, "")}`;
}

type ErrorBody = { error?: unknown; message?: unknown; highest_token?: unknown };

/** Client of one filewriter. Stateless: share one per process. */
export class FilewriterClient {
  /** The normalised base URL. */
  readonly baseUrl: string;
  readonly #timeoutMs: number;
  readonly #attemptsMax: number;
  readonly #retryDelayMs: number;
  readonly #callTimeoutMs: number | null;

  /**
   * @param baseUrl `host:port` or an http(s) URL.
   * @throws {InvalidArgumentError} when `baseUrl` is not usable.
   */
  constructor(baseUrl: string, options: FilewriterClientOptions = {}) {
    this.baseUrl = normaliseBaseUrl(baseUrl);
    this.#timeoutMs = options.timeoutMs ?? 10_000;
    this.#attemptsMax = Math.max(1, options.attemptsMax ?? 3);
    this.#retryDelayMs = options.retryDelayMs ?? 100;
    this.#callTimeoutMs = options.callTimeoutMs ?? null;
  }

  /**
   * Appends to a file, fenced by (lock, token).
   * @throws {StaleFenceError} (a {@link FilewriterStaleFenceError}) when a newer token was accepted.
   * @throws {InvalidArgumentError} when the filewriter refuses the input (4xx).
   * @throws {ResourceExhaustedError} when the filewriter is overloaded.
   * @throws {FilewriterUnavailableError} when unreachable or failing after every attempt.
   */
  async append(request: FilewriterAppendRequest): Promise<FilewriterAppendResult> {
    const requestId = request.requestId === undefined || request.requestId === ""
      ? crypto.randomUUID()
      : request.requestId;
    const body = JSON.stringify({
      lock: request.lock,
      token: tokenAsNumber(request.token),
      request_id: requestId,
      ...(typeof request.data === "string"
        ? { content: request.data }
        : { content_base64: encodeBase64(request.data) }),
    });
    const response = await this.#fetch(`/v1/files/${encodeURIComponent(request.file)}:append`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body,
    });
    const result = await response.json() as Record<string, unknown>;
    return {
      offset: Number(result.offset),
      size: Number(result.size),
      duplicate: result.duplicate === true,
      token: Number(result.token),
      requestId,
    };
  }

  /**
   * Reads a whole file; null when nothing was ever appended to it.
   * @throws {InvalidArgumentError} for an invalid name.
   * @throws {FilewriterUnavailableError} when unreachable.
   */
  async read(file: string): Promise<Uint8Array | null> {
    const response = await this.#fetch(`/v1/files/${encodeURIComponent(file)}`, {}, true);
    if (response === null) return null;
    return new Uint8Array(await response.arrayBuffer());
  }

  /**
   * Reads a file's metadata; null when nothing was ever appended to it.
   * @throws {InvalidArgumentError} for an invalid name.
   * @throws {FilewriterUnavailableError} when unreachable.
   */
  async meta(file: string): Promise<FilewriterMeta | null> {
    const response = await this.#fetch(`/v1/files/${encodeURIComponent(file)}/meta`, {}, true);
    if (response === null) return null;
    const meta = await response.json() as Record<string, unknown>;
    return {
      highestToken: Number(meta.highest_token),
      lock: String(meta.lock),
      size: Number(meta.size),
      appends: Number(meta.appends),
    };
  }

  /** Sends with retries; returns the 2xx response (or null for a 404 when allowed). */
  #fetch(path: string, init: RequestInit, notFoundIsNull: true): Promise<Response | null>;
  #fetch(path: string, init: RequestInit): Promise<Response>;
  async #fetch(path: string, init: RequestInit, notFoundIsNull = false): Promise<Response | null> {
    const deadlineMs = this.#callTimeoutMs === null
      ? null
      : performance.now() + this.#callTimeoutMs;
    let lastError: unknown = null;
    let attempts = 0;
    while (attempts < this.#attemptsMax) {
      if (attempts > 0) {
        const pauseMs = this.#retryDelayMs * 2 ** (attempts - 1);
        if (deadlineMs !== null && performance.now() + pauseMs >= deadlineMs) break;
        await delay(pauseMs);
      }
      const timeoutMs = deadlineMs === null
        ? this.#timeoutMs
        : Math.min(this.#timeoutMs, Math.max(1, Math.floor(deadlineMs - performance.now())));
      attempts += 1;
      let response: Response;
      try {
        response = await fetch(this.baseUrl + path, {
          ...init,
          signal: AbortSignal.timeout(timeoutMs),
        });
      } catch (error) {
        lastError = error instanceof DOMException && error.name === "TimeoutError"
          ? new Error(`no answer within ${timeoutMs} ms`, { cause: error })
          : error;
        continue;
      }
      if (response.ok) return response;
      if (response.status === 404 && notFoundIsNull) {
        await response.body?.cancel();
        return null;
      }
      const error = await errorFromResponse(response);
      if (!(error instanceof FilewriterUnavailableError)) throw error;
      lastError = error;
    }
    if (lastError instanceof FilewriterUnavailableError) {
      throw new FilewriterUnavailableError(lastError.message, {
        cause: lastError,
        attempts,
        problem: lastError.message,
        unreachable: false,
      });
    }
    const problem = lastError instanceof Error ? lastError.message : String(lastError);
    const within = this.#callTimeoutMs === null ? "" : ` within ${this.#callTimeoutMs} ms`;
    throw new FilewriterUnavailableError(
      `Cannot reach the filewriter at ${this.baseUrl} as every one of ${attempts} ${
        attempts === 1 ? "attempt" : "attempts"
      }${within} failed: received ${problem}`,
      { cause: lastError, attempts, problem, unreachable: true },
    );
  }
}

async function errorFromResponse(response: Response): Promise<DlockError> {
  const text = await response.text();
  let body: ErrorBody = {};
  try {
    body = JSON.parse(text) as ErrorBody;
  } catch { /* not JSON: keep the text */ }
  const message = typeof body.message === "string"
    ? body.message
    : `Cannot complete the filewriter request as it answered HTTP ${response.status}: received ${
      text.slice(0, 200)
    }`;
  if (response.status === 409 && body.error === "STALE_FENCE") {
    return new FilewriterStaleFenceError(message, Number(body.highest_token));
  }
  if (response.status === 503 && body.error === "RESOURCE_EXHAUSTED") {
    return new ResourceExhaustedError(message);
  }
  if (response.status >= 500) return new FilewriterUnavailableError(message);
  return new InvalidArgumentError(message);
}

function tokenAsNumber(token: number | bigint): number {
  if (typeof token === "number") return token;
  if (token < 0n || token > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new InvalidArgumentError(
      `Cannot send the fence as the token must be from 0 to ${Number.MAX_SAFE_INTEGER}: received ${token}`,
    );
  }
  return Number(token);
}

function encodeBase64(bytes: Uint8Array): string {
  let binary = "";
  const step = 0x8000;
  for (let start = 0; start < bytes.length; start += step) {
    binary += String.fromCharCode(...bytes.subarray(start, start + step));
  }
  return btoa(binary);
}

function delay(milliseconds: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, milliseconds));
}

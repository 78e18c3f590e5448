/**
 * The filewriter's HTTP API: routing, body parsing, limits and the mapping of outcomes
 * and typed errors to status codes, in one place. See README.md in this folder.
 *
 * @module
 */
import { DlockError, InvalidArgumentError } from "../errors.ts";
import type { AppendOutcome, AppendRequest, FileBackend, FileMeta } from "./backend.ts";
import {
  describeReceived,
  validateFileName,
  validateLockName,
  validateRequestId,
  validateToken,
} from "./validate.ts";

/** Receives one log event; `fields` are structured details. */
export type FilewriterLogger = (
  level: "info" | "warn" | "error",
  message: string,
  fields?: Record<string, unknown>,
) => void;

/** Options of {@link createFilewriterHandler}. */
export type FilewriterHandlerOptions = {
  /** Where files live; the caller opens and closes it. */
  backend: FileBackend;
  /** Largest content of one append, in bytes (after base64 decoding). */
  maxContentBytes: number;
  /** Log sink; default: silent. */
  log?: FilewriterLogger;
};

/** An error that maps straight to an HTTP response. */
class HttpError extends Error {
  readonly status: number;
  readonly reason: string;
  readonly headers: Record<string, string>;
  constructor(
    status: number,
    reason: string,
    message: string,
    headers: Record<string, string> = {},
  ) {
    super(message);
    this.status = status;
    this.reason = reason;
    this.headers = headers;
  }
}

/** Bytes of JSON syntax and fields allowed around the content in a request body. */
const bodyOverheadBytes = 64 * 1024;
/** A JSON string may spell one content byte as `\u00XX`: six body bytes. */
const jsonEscapeFactor = 6;

function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body) + "\n", {
    status,
    headers: { "content-type": "application/json; charset=utf-8", ...headers },
  });
}

function errorResponse(error: HttpError): Response {
  return json(error.status, { error: error.reason, message: error.message }, error.headers);
}

function methodNotAllowed(method: string, path: string, allowed: string): HttpError {
  return new HttpError(
    405,
    "METHOD_NOT_ALLOWED",
    `Cannot ${method} ${path} as it only allows ${allowed}: received ${method}`,
    { allow: allowed },
  );
}

/**
 * Builds the request handler for `Deno.serve`. Routes:
 * - `POST /v1/files/{name}:append`, `GET /v1/files/{name}`, `GET /v1/files/{name}/meta`
 * - `POST /write`, `GET /read/{file_id}` (the original API)
 * - `GET /healthz`
 */
export function createFilewriterHandler(
  options: FilewriterHandlerOptions,
): (request: Request) => Promise<Response> {
  const log = options.log ?? (() => {});
  return async (request: Request): Promise<Response> => {
    const path = new URL(request.url).pathname;
    try {
      return await route(options, request, path);
    } catch (error) {
      const httpError = toHttpError(error);
      if (httpError.status >= 500) {
        log("error", "request failed", { method: request.method, path, error: String(error) });
      }
      return errorResponse(httpError);
    }
  };
}

function toHttpError(error: unknown): HttpError {
  if (error instanceof HttpError) return error;
  if (error instanceof InvalidArgumentError) {
    return new HttpError(400, "INVALID_ARGUMENT", error.message);
  }
  if (error instanceof DlockError && error.reason === "RESOURCE_EXHAUSTED") {
    return new HttpError(503, "RESOURCE_EXHAUSTED", error.message, { "retry-after": "1" });
  }
  const message = error instanceof Error ? error.message : String(error);
  return new HttpError(
    500,
    "INTERNAL",
    `Cannot serve the request as the backend failed: ${message}`,
  );
}

function route(
  options: FilewriterHandlerOptions,
  request: Request,
  path: string,
): Promise<Response> {
  const method = request.method;
  if (path === "/healthz") {
    if (method !== "GET") throw methodNotAllowed(method, path, "GET");
    return Promise.resolve(json(200, { status: "ok" }));
  }
  if (path.startsWith("/v1/files/")) return routeVersioned(options, request, path);
  if (path === "/write") {
    if (method !== "POST") throw methodNotAllowed(method, path, "POST");
    return handleOriginalWrite(options, request);
  }
  if (path.startsWith("/read/")) {
    if (method !== "GET") throw methodNotAllowed(method, path, "GET");
    return handleRead(options.backend, originalFileName(path.slice("/read/".length)));
  }
  throw new HttpError(
    404,
    "NOT_FOUND",
    `Cannot route the request as no endpoint matches: received ${method} ${path}`,
  );
}

function routeVersioned(
  options: FilewriterHandlerOptions,
  request: Request,
  path: string,
): Promise<Response> {
  const rest = path.slice("/v1/files/".length);
  const method = request.method;
  if (rest.endsWith(":append")) {
    if (method !== "POST") throw methodNotAllowed(method, path, "POST");
    const file = decodeFileName(rest.slice(0, -":append".length));
    return handleAppend(options, file, request);
  }
  if (rest.endsWith("/meta") && !rest.slice(0, -"/meta".length).includes("/")) {
    if (method !== "GET") throw methodNotAllowed(method, path, "GET");
    return handleMeta(options.backend, decodeFileName(rest.slice(0, -"/meta".length)));
  }
  if (method !== "GET") throw methodNotAllowed(method, path, "GET");
  return handleRead(options.backend, decodeFileName(rest));
}

/** Percent-decodes a path segment and validates it as a file name. */
function decodeFileName(segment: string): string {
  let name: string;
  try {
    name = decodeURIComponent(segment);
  } catch {
    throw new InvalidArgumentError(
      `Cannot use the file name as it is not valid percent-encoded UTF-8: received ${
        describeReceived(segment)
      }`,
    );
  }
  return validateFileName(name);
}

/** `/read/3` reads `file_3` (the original API); any other segment is a file name. */
function originalFileName(segment: string): string {
  return /^[0-9]{1,15}$/.test(segment) ? `file_${Number(segment)}` : decodeFileName(segment);
}

async function handleRead(backend: FileBackend, file: string): Promise<Response> {
  const content = await backend.read(file);
  if (content === null) throw notFound(file);
  return new Response(content, {
    status: 200,
    headers: {
      "content-type": "application/octet-stream",
      "content-length": String(content.length),
    },
  });
}

async function handleMeta(backend: FileBackend, file: string): Promise<Response> {
  const meta: FileMeta | null = await backend.meta(file);
  if (meta === null) throw notFound(file);
  return json(200, {
    highest_token: meta.highestToken,
    lock: meta.lock,
    size: meta.size,
    appends: meta.appends,
  });
}

function notFound(file: string): HttpError {
  return new HttpError(
    404,
    "NOT_FOUND",
    `Cannot read file ${file} as nothing was ever appended to it: received ${JSON.stringify(file)}`,
  );
}

async function handleAppend(
  options: FilewriterHandlerOptions,
  file: string,
  request: Request,
): Promise<Response> {
  const body = await readJsonBody(request, options.maxContentBytes);
  const append = parseAppendBody(file, body, options.maxContentBytes);
  return appendResponse(append, await options.backend.append(append));
}

async function handleOriginalWrite(
  options: FilewriterHandlerOptions,
  request: Request,
): Promise<Response> {
  const body = await readJsonBody(request, options.maxContentBytes);
  const append = parseAppendBody(originalWriteFile(body), body, options.maxContentBytes);
  return appendResponse(append, await options.backend.append(append));
}

/** The target of `POST /write`: `"file": name`, or `"file_id": N` meaning `file_N`. */
function originalWriteFile(body: Record<string, unknown>): string {
  if (body.file !== undefined && body.file_id !== undefined) {
    throw new InvalidArgumentError(
      `Cannot write as the body names both "file" and "file_id": received ${
        describeReceived(body.file)
      } and ${describeReceived(body.file_id)}`,
    );
  }
  if (body.file !== undefined) return validateFileName(body.file);
  const id = body.file_id;
  if (typeof id !== "number" || !Number.isSafeInteger(id) || id < 0) {
    throw new InvalidArgumentError(
      `Cannot write as "file_id" must be a non-negative integer (or give "file"): received ${
        describeReceived(id)
      }`,
    );
  }
  return `file_${id}`;
}

function appendResponse(request: AppendRequest, outcome: AppendOutcome): Response {
  if (outcome.status === "ok") {
    const { offset, size, duplicate, token } = outcome.result;
    return json(200, { offset, size, duplicate, token });
  }
  const message = request.token < outcome.highestToken
    ? `Cannot append to file ${request.file} as token ${request.token} is older than token ${outcome.highestToken} already accepted`
    : `Cannot append to file ${request.file} as token ${request.token} was already accepted for lock ${
      JSON.stringify(outcome.lock)
    }: received lock ${JSON.stringify(request.lock)}`;
  return json(409, {
    error: "STALE_FENCE",
    message,
    highest_token: outcome.highestToken,
    lock: outcome.lock,
  });
}

/** Reads a body of at most the allowed size and parses it as a JSON object. */
async function readJsonBody(
  request: Request,
  maxContentBytes: number,
): Promise<Record<string, unknown>> {
  const limitBytes = maxContentBytes * jsonEscapeFactor + bodyOverheadBytes;
  const declared = Number(request.headers.get("content-length") ?? "0");
  if (declared > limitBytes) throw bodyTooLarge(limitBytes, `${declared} bytes`);
  const bytes = await readLimited(request, limitBytes);
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (error) {
    throw new InvalidArgumentError(
      `Cannot parse the request body as it is not valid UTF-8 JSON: received ${bytes.length} bytes (${
        error instanceof Error ? error.message : String(error)
      })`,
    );
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new InvalidArgumentError(
      `Cannot parse the request body as it is not a JSON object: received ${
        describeReceived(parsed)
      }`,
    );
  }
  return parsed as Record<string, unknown>;
}

function bodyTooLarge(limitBytes: number, received: string): HttpError {
  return new HttpError(
    413,
    "CONTENT_TOO_LARGE",
    `Cannot accept the request body as it is over ${limitBytes} bytes: received ${received}`,
  );
}

async function readLimited(request: Request, limitBytes: number): Promise<Uint8Array> {
  if (request.body === null) return new Uint8Array(0);
  const chunks: Uint8Array[] = [];
  let total = 0;
  const reader = request.body.getReader();
  try {
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.length;
      if (total > limitBytes) throw bodyTooLarge(limitBytes, `more than ${limitBytes} bytes`);
      chunks.push(value);
    }
  } finally {
    reader.releaseLock();
  }
  const bytes = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.length;
  }
  return bytes;
}

/** Turns a parsed body into an append request; checks fence, request id and content. */
function parseAppendBody(
  file: string,
  body: Record<string, unknown>,
  maxContentBytes: number,
): AppendRequest {
  if (body.lock === undefined || body.token === undefined) {
    throw new InvalidArgumentError(
      `Cannot append to file ${file} as the write carries no fence: "lock" and "token" are required, received lock ${
        describeReceived(body.lock ?? null)
      } and token ${describeReceived(body.token ?? null)}`,
    );
  }
  const lock = validateLockName(body.lock);
  const token = validateToken(body.token);
  const requestId = validateRequestId(body.request_id);
  const data = parseContent(file, body);
  if (data.length > maxContentBytes) {
    throw new HttpError(
      413,
      "CONTENT_TOO_LARGE",
      `Cannot append to file ${file} as the content is over the limit of ${maxContentBytes} bytes: received ${data.length} bytes`,
    );
  }
  return { file, lock, token, requestId, data };
}

function parseContent(file: string, body: Record<string, unknown>): Uint8Array {
  const text = body.content;
  const base64 = body.content_base64;
  if ((text === undefined) === (base64 === undefined)) {
    throw new InvalidArgumentError(
      `Cannot append to file ${file} as the body must hold exactly one of "content" and "content_base64": received ${
        text === undefined ? "neither" : "both"
      }`,
    );
  }
  if (text !== undefined) {
    if (typeof text !== "string") {
      throw new InvalidArgumentError(
        `Cannot append to file ${file} as "content" must be a string: received ${
          describeReceived(text)
        }`,
      );
    }
    return new TextEncoder().encode(text);
  }
  if (
    typeof base64 !== "string" || !/^[A-Za-z0-9+/]*={0,2}$/.test(base64) || base64.length % 4 !== 0
  ) {
    throw new InvalidArgumentError(
      `Cannot append to file ${file} as "content_base64" must be padded standard base64: received ${
        describeReceived(base64)
      }`,
    );
  }
  return Uint8Array.from(atob(base64), (character) => character.charCodeAt(0));
}

/**
 * Input checks shared by the HTTP edge and the backends. Every message reads
 * "Cannot X as Y: received Z" (STYLE.md).
 *
 * @module
 */
import { InvalidArgumentError } from "../errors.ts";
import { limits } from "../limits.ts";
import { type AppendRequest, requestIdBytesMax } from "./backend.ts";

const encoder = new TextEncoder();

/** Renders a received value for an error message, bounded in length. */
export function describeReceived(value: unknown): string {
  let text: string;
  try {
    text = typeof value === "string" ? JSON.stringify(value) : String(JSON.stringify(value));
  } catch {
    text = String(value);
  }
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

/** True when `text` holds a C0 control character (incl. NUL), DEL or a C1 control. */
function hasControlCharacter(text: string): boolean {
  for (let index = 0; index < text.length; index += 1) {
    const code = text.charCodeAt(index);
    if (code < 0x20 || (code >= 0x7f && code <= 0x9f)) return true;
  }
  return false;
}

/**
 * Returns why `name` is not a valid file name, or null when it is valid. Valid names are
 * 1..255 UTF-8 bytes without `/`, `\`, `..`, NUL or any control character, and not `.`,
 * so a name can never address anything but itself inside the data directory or a URL.
 */
export function fileNameProblem(name: unknown): string | null {
  if (typeof name !== "string") return "the file name is not a string";
  if (name.length === 0) return "the file name is empty";
  const bytes = encoder.encode(name).length;
  if (bytes > limits.fileNameBytesMax) {
    return `the file name is ${bytes} UTF-8 bytes, over the limit of ${limits.fileNameBytesMax}`;
  }
  if (name.includes("/") || name.includes("\\")) return "the file name contains a path separator";
  if (name.includes("..")) return "the file name contains '..'";
  // A URL path segment "." (or "%2E") means "this directory": such a file could be written
  // but never read back over HTTP (found by hand: GET /v1/files/%2E/meta read file "meta").
  if (name === ".") return "the file name is '.', which a URL cannot name";
  if (hasControlCharacter(name)) return "the file name contains NUL or a control character";
  return null;
}

/**
 * Checks a file name.
 * @throws {InvalidArgumentError} when {@link fileNameProblem} finds a problem.
 */
export function validateFileName(name: unknown): string {
  const problem = fileNameProblem(name);
  if (problem !== null) {
    throw new InvalidArgumentError(
      `Cannot use the file name as ${problem}: received ${describeReceived(name)}`,
    );
  }
  return name as string;
}

/**
 * Checks a lock name: 1..256 UTF-8 bytes, no control characters.
 * @throws {InvalidArgumentError} when it is not valid.
 */
export function validateLockName(lock: unknown): string {
  if (typeof lock !== "string" || lock.length === 0) {
    throw new InvalidArgumentError(
      `Cannot accept the write as it carries no fence: "lock" must be a non-empty string, received ${
        describeReceived(lock)
      }`,
    );
  }
  if (encoder.encode(lock).length > limits.lockNameBytesMax || hasControlCharacter(lock)) {
    throw new InvalidArgumentError(
      `Cannot accept the write as "lock" must be at most ${limits.lockNameBytesMax} UTF-8 bytes without control characters: received ${
        describeReceived(lock)
      }`,
    );
  }
  return lock;
}

/**
 * Checks a fencing token: a non-negative safe integer.
 * @throws {InvalidArgumentError} when it is not valid.
 */
export function validateToken(token: unknown): number {
  if (typeof token !== "number" || !Number.isSafeInteger(token) || token < 0) {
    throw new InvalidArgumentError(
      `Cannot accept the write as it carries no valid fence: "token" must be a non-negative integer, received ${
        describeReceived(token)
      }`,
    );
  }
  return token;
}

/**
 * Checks a request id: null/undefined (no dedupe) or 1..256 UTF-8 bytes without control
 * characters.
 * @throws {InvalidArgumentError} when it is not valid.
 */
export function validateRequestId(requestId: unknown): string | null {
  if (requestId === undefined || requestId === null) return null;
  if (
    typeof requestId !== "string" || requestId.length === 0 ||
    encoder.encode(requestId).length > requestIdBytesMax || hasControlCharacter(requestId)
  ) {
    throw new InvalidArgumentError(
      `Cannot accept the write as "request_id" must be a string of 1 to ${requestIdBytesMax} UTF-8 bytes without control characters: received ${
        describeReceived(requestId)
      }`,
    );
  }
  return requestId;
}

/**
 * Checks every field of an append request (the backends call this again, so a backend
 * used without the HTTP edge is just as strict).
 * @throws {InvalidArgumentError} when a field is not valid.
 */
export function validateAppendRequest(request: AppendRequest): AppendRequest {
  validateFileName(request.file);
  validateLockName(request.lock);
  validateToken(request.token);
  validateRequestId(request.requestId);
  if (!(request.data instanceof Uint8Array)) {
    throw new InvalidArgumentError(
      `Cannot accept the write as the content is not bytes: received ${
        describeReceived(typeof request.data)
      }`,
    );
  }
  return request;
}

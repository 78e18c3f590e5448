/**
 * Stateless validation of names, TTLs and ids. Each function returns an error message
 * (for an INVALID_ARGUMENT result) or null when the value is acceptable, so the state
 * machine can turn bad input into a deterministic result instead of throwing.
 *
 * @module
 */

import { limits } from "../limits.ts";

/** UTF-8 length of `value` in bytes, without allocating for ASCII strings. */
export function utf8ByteLength(value: string): number {
  let bytes = 0;
  for (let i = 0; i < value.length; i++) {
    const code = value.charCodeAt(i);
    if (code < 0x80) bytes += 1;
    else if (code < 0x800) bytes += 2;
    else if (code >= 0xd800 && code <= 0xdbff && i + 1 < value.length) {
      const next = value.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        bytes += 4;
        i++;
      } else {
        bytes += 3;
      }
    } else bytes += 3;
  }
  return bytes;
}

/** True for C0 controls, DEL and C1 controls (U+0000–U+001F, U+007F–U+009F). */
function hasControlCharacter(value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    const code = value.charCodeAt(i);
    if (code < 0x20 || (code >= 0x7f && code <= 0x9f)) return true;
  }
  return false;
}

/** What {@link textError} checks for one kind of name. */
interface TextRules {
  /** The noun in messages ("lock name"). */
  readonly what: string;
  readonly bytesMax: number;
  readonly allowEmpty: boolean;
  readonly allowControlCharacters: boolean;
}

/** The checks shared by every name and key, in order: type, empty, length, Unicode, control. */
function textError(value: unknown, rules: TextRules): string | null {
  const { what, bytesMax } = rules;
  if (typeof value !== "string") {
    return `Cannot use the ${what} as it is not a string: received ${typeof value}`;
  }
  if (!rules.allowEmpty && value.length === 0) return `Cannot use the ${what} as it is empty`;
  const bytes = utf8ByteLength(value);
  if (bytes > bytesMax) {
    return `Cannot use the ${what} as it is longer than ${bytesMax} UTF-8 bytes: received ${bytes} bytes`;
  }
  if (!value.isWellFormed()) {
    return `Cannot use the ${what} as it is not well-formed Unicode (lone surrogate)`;
  }
  if (!rules.allowControlCharacters && hasControlCharacter(value)) {
    return `Cannot use the ${what} as it contains a control character: received ${
      JSON.stringify(value)
    }`;
  }
  return null;
}

/**
 * Checks a lock name: 1–{@link limits.lockNameBytesMax} UTF-8 bytes, well-formed
 * Unicode, no control characters.
 * @returns an error message, or null when the name is valid.
 */
export function lockNameError(name: unknown): string | null {
  return textError(name, {
    what: "lock name",
    bytesMax: limits.lockNameBytesMax,
    allowEmpty: false,
    allowControlCharacters: false,
  });
}

/**
 * Checks a client name: at most {@link limits.clientNameBytesMax} UTF-8 bytes (may be
 * empty), well-formed, no control characters.
 * @returns an error message, or null when the name is valid.
 */
export function clientNameError(name: unknown): string | null {
  return textError(name, {
    what: "client name",
    bytesMax: limits.clientNameBytesMax,
    allowEmpty: true,
    allowControlCharacters: false,
  });
}

/**
 * Checks an open key (the client's idempotency key for OpenSession): at most
 * {@link limits.clientNameBytesMax} UTF-8 bytes; empty means "no deduplication".
 * @returns an error message, or null when the key is valid.
 */
export function openKeyError(key: unknown): string | null {
  return textError(key, {
    what: "open key",
    bytesMax: limits.clientNameBytesMax,
    allowEmpty: true,
    allowControlCharacters: true,
  });
}

/**
 * Resolves a requested session TTL: 0 means {@link limits.sessionTtlMsDefault};
 * otherwise it must be an integer in [sessionTtlMsMin, sessionTtlMsMax].
 * @returns the TTL in milliseconds, or an error message.
 */
export function resolveTtlMs(ttlMs: unknown): number | string {
  if (ttlMs === 0) return limits.sessionTtlMsDefault;
  if (
    typeof ttlMs !== "number" || !Number.isInteger(ttlMs) || ttlMs < limits.sessionTtlMsMin ||
    ttlMs > limits.sessionTtlMsMax
  ) {
    return `Cannot open the session as its TTL is outside ${limits.sessionTtlMsMin}..${limits.sessionTtlMsMax} ms (0 for the default ${limits.sessionTtlMsDefault}): received ${
      String(ttlMs)
    }`;
  }
  return ttlMs;
}

/** True for integers in [1, 2^53 - 1] (session ids, request ids, tokens). */
export function isPositiveId(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 1;
}

/** True for integers in [0, 2^53 - 1] (times in milliseconds, TTLs on the wire). */
export function isNonNegativeInteger(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

/**
 * The shape of a server address, checked where addresses come in (the command line, and
 * `connect`), so that a typo fails at once instead of being retried for the whole retry
 * bound. Private to src/client/ (and src/cli/, which reports it as a usage error).
 *
 * @module
 */

const portMax = 65_535;

/**
 * Why `text` is not a server address, or null when it is one: `HOST:PORT`, where HOST is a
 * name, an IPv4 address or a bracketed IPv6 address (`[::1]:5000`) and PORT is 1..65535.
 * @param role what the address is for, as the message names it ("a server address").
 */
export function serverAddressProblem(text: string, role: string): string | null {
  const shown = /^\S+$/.test(text) ? text : JSON.stringify(text);
  const match = /^(\[[0-9a-fA-F:.]+\]|[^\s:,/\[\]]+)(?::(\d*))?$/.exec(text);
  if (match === null) return `Cannot use ${shown} as ${role}: expected HOST:PORT`;
  if (match[2] === undefined || match[2] === "") {
    return `Cannot use ${shown} as ${role} as it has no port: expected HOST:PORT`;
  }
  const port = Number(match[2]);
  if (!Number.isInteger(port) || port < 1 || port > portMax) {
    return `Cannot use ${shown} as ${role} as its port is out of range: expected a port from 1 to ${portMax}`;
  }
  return null;
}

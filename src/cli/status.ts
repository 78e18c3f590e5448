/**
 * `dlock status [SERVER] [--json]`: members, leader, term, commit index, sessions and
 * locks (holders and queues) as a readable table, or JSON for scripts.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { fetchStatus, type StatusResponse } from "../client/mod.ts";
import {
  describeError,
  resolveServers,
  secondsToMs,
  serversHelp,
  UsageError,
} from "./_client_args.ts";
import { usageFailure } from "./_usage.ts";

const usage = `Usage: dlock status [SERVER] [options]

Prints the cluster as the leader sees it: members, leader, term, commit index,
sessions, and locks with their holders, tokens and waiters.

Options:
${serversHelp}
  --json                     print the raw status as JSON (for scripts)
  --locks N                  most locks to list (default 1000)
  --timeout S                give up after S seconds, S > 0 (default 10)
  -h, --help                 show this help

Exit codes: 0 ok, 1 no server answered, 2 bad usage.`;

/** Runs `dlock status`; returns the exit code. */
export async function run(args: string[]): Promise<number> {
  let servers: string[];
  let json: boolean;
  let locksLimit: number;
  let timeoutMs: number;
  try {
    const { values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      options: {
        servers: { type: "string" },
        json: { type: "boolean", default: false },
        locks: { type: "string", default: "1000" },
        timeout: { type: "string", default: "10" },
        help: { type: "boolean", short: "h" },
      },
    });
    if (values.help === true) {
      console.log(usage);
      return 0;
    }
    if (positionals.length > 1) {
      throw new UsageError(`unexpected arguments: ${positionals.slice(1).join(" ")}`);
    }
    servers = resolveServers(values.servers, positionals[0]);
    json = values.json;
    locksLimit = Number(values.locks);
    if (!Number.isInteger(locksLimit) || locksLimit < 1) {
      throw new UsageError(`--locks must be a whole number >= 1: received ${values.locks}`);
    }
    timeoutMs = secondsToMs(values.timeout, "--timeout");
  } catch (error) {
    return usageFailure("status", usage, error);
  }
  try {
    const status = await fetchStatus(servers, { locksLimit, timeoutMs });
    console.log(json ? JSON.stringify(status, null, 2) : formatStatus(status));
    return 0;
  } catch (error) {
    console.error(
      `dlock status: cannot get the status from ${servers.join(",")}: ${describeError(error)}`,
    );
    return 1;
  }
}

/** The status as aligned plain-text tables. */
export function formatStatus(status: StatusResponse): string {
  const lines: string[] = [];
  lines.push(
    `leader ${status.leader || "(none)"}  term ${status.term}  commit ${status.commitIndex}  ` +
      `applied ${status.appliedIndex}  (answered by ${status.self}, ${status.role})`,
  );
  if (status.filewriter !== "") lines.push(`filewriter ${status.filewriter}`);
  lines.push("");
  lines.push(...table(
    ["MEMBER", "ROLE"],
    status.members.map((member) => [
      member.address,
      (member.isLeader ? "leader" : "follower") + (member.isSelf ? " (answered)" : ""),
    ]),
  ));
  lines.push("");
  lines.push(`SESSIONS (${status.sessionCount})`);
  if (status.sessions.length > 0) {
    lines.push(...table(
      ["ID", "NAME", "TTL", "HELD", "WAITING"],
      status.sessions.map((session) => [
        String(session.id),
        session.clientName,
        `${session.ttlMs / 1000}s`,
        String(session.held),
        String(session.waiting),
      ]),
    ));
  }
  lines.push("");
  const shown = status.locks.length < status.lockCount ? ` (showing ${status.locks.length})` : "";
  lines.push(`LOCKS (${status.lockCount})${shown}`);
  if (status.locks.length > 0) {
    lines.push(...table(
      ["NAME", "TOKEN", "HOLDER", "WAITERS"],
      status.locks.map((lock) => [
        lock.name,
        lock.holderSession === 0 ? "-" : String(lock.token),
        lock.holderSession === 0 ? "(free)" : `${lock.holderSession} (${lock.holderName})`,
        lock.waiters.map((waiter) => `${waiter.sessionId} (${waiter.clientName})`).join(", ") ||
        "-",
      ]),
    ));
  }
  return lines.join("\n");
}

function table(header: string[], rows: string[][]): string[] {
  const widths = header.map((title, column) =>
    Math.max(title.length, ...rows.map((row) => (row[column] ?? "").length))
  );
  const render = (row: string[]) =>
    row.map((cell, column) => column === row.length - 1 ? cell : cell.padEnd(widths[column] ?? 0))
      .join("  ");
  return [render(header), ...rows.map(render)].map((line) => "  " + line.trimEnd());
}

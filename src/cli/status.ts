/**
 * `dlock status [SERVER] [--json]`: members, leader, term, commit index, sessions and
 * locks (holders and queues) as a readable table, or JSON for scripts.
 *
 * @module
 */
import { parseArgs } from "node:util";
import {
  fetchStatus,
  type Member,
  type MemberProbe,
  probeMembers,
  type StatusResponse,
} from "../client/mod.ts";
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
sessions, and locks with their holders, tokens and waiters. Every member is also asked
for its own role; one that does not answer is shown as not answering, never with a role.
When no leader answers, the sessions and locks come from another member and may be out
of date (they are labelled so, and the exit code is 3).

Options:
${serversHelp}
  --json                     print the status as JSON (for scripts); each other member
                             has a "probe": its own answer, or why it did not answer
  --locks N                  most locks, and most sessions, to list (default 1000)
  --timeout S                give up after S seconds, S > 0 (default 10)
  -h, --help                 show this help

Exit codes: 0 the leader answered (members may still be down: see the table),
1 no server answered, 2 bad usage, 3 no leader answered (no leader is known, or it did
not answer): what is shown comes from another member and may be out of date.`;

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
    const others = status.members.map((m) => m.address).filter((a) => a !== status.self);
    const probes = await probeMembers(others, { timeoutMs: Math.min(2_000, timeoutMs) });
    console.log(
      json ? JSON.stringify(withProbes(status, probes), null, 2) : formatStatus(status, probes),
    );
    return fromLeader(status) ? 0 : 3;
  } catch (error) {
    console.error(
      `dlock status: cannot get the status from ${servers.join(",")}: ${describeError(error)}`,
    );
    return 1;
  }
}

/**
 * The JSON form: the answering member's status, with each other member's own answer
 * (`probe`: its role, term and leader, or why it did not answer), so that a script sees a
 * dead member as the table shows it.
 */
export function withProbes(status: StatusResponse, probes: readonly MemberProbe[]): unknown {
  return {
    ...status,
    members: status.members.map((member) => {
      const probe = probes.find((candidate) => candidate.address === member.address);
      if (probe === undefined) return member;
      return {
        ...member,
        probe: probe.status === null ? { answered: false, problem: probe.problem } : {
          answered: true,
          role: probe.status.role,
          term: probe.status.term,
          leader: probe.status.leader,
          commitIndex: probe.status.commitIndex,
        },
      };
    }),
  };
}

/** True when the status was answered by the leader itself (so it is current). */
export function fromLeader(status: StatusResponse): boolean {
  return status.leader !== "" && status.leader === status.self;
}

/**
 * The status as aligned plain-text tables. `probes` are the other members' own answers
 * (see probeMembers): a member's role is shown only from a live answer, its own or the
 * answering member's; without a probe, a member's role is shown as unknown.
 */
export function formatStatus(status: StatusResponse, probes: readonly MemberProbe[] = []): string {
  const lines: string[] = [];
  lines.push(
    `leader ${status.leader || "(none)"}  term ${status.term}  commit ${status.commitIndex}  ` +
      `applied ${status.appliedIndex}  (answered by ${status.self}, ${status.role})`,
  );
  if (status.filewriter !== "") lines.push(`filewriter ${status.filewriter}`);
  lines.push("");
  lines.push(...table(
    ["MEMBER", "STATE"],
    status.members.map((member) => [
      member.address,
      memberState(status, member, probes.find((probe) => probe.address === member.address)),
    ]),
  ));
  const stale = fromLeader(status)
    ? ""
    : ` from ${status.self}, not the leader: may be out of date`;
  lines.push("");
  const sessionsShown = status.sessions.length < status.sessionCount
    ? ` (showing ${status.sessions.length})`
    : "";
  lines.push(`SESSIONS (${status.sessionCount})${sessionsShown}${stale}`);
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
  lines.push(`LOCKS (${status.lockCount})${shown}${stale}`);
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

/**
 * One member's row: its role only from a live answer (its own, or its own probe), and what
 * the leader last heard from it when the leader answered.
 */
function memberState(
  status: StatusResponse,
  member: Member,
  probe: MemberProbe | undefined,
): string {
  const contact = leaderContact(status, member);
  if (member.isSelf || member.address === status.self) return `${status.role} (answered)`;
  if (probe?.status) {
    return probe.status.role + (contact === null ? "" : `, ${contact.text}`);
  }
  if (probe !== undefined) {
    return "not answering" + (contact === null ? "" : ` (${contact.text})`) + `: ${probe.problem}`;
  }
  // Not asked: only the leader's view of it, if this is the leader.
  if (contact === null) return "role unknown (not asked)";
  return contact.stale ? `not answering (${contact.text})` : `answering (${contact.text})`;
}

/** What the answering leader last heard from `member`; null when it is not the leader. */
function leaderContact(
  status: StatusResponse,
  member: Member,
): { text: string; stale: boolean } | null {
  if (!fromLeader(status) || member.address === status.self) return null;
  if (member.contactKnown === undefined) return null; // A server without the field.
  if (!member.contactKnown) return { text: "the leader has not heard from it", stale: true };
  const agoMs = member.lastContactMsAgo ?? 0;
  const timeoutMs = status.electionTimeoutMs ?? 0;
  return {
    text: `last contact ${(agoMs / 1000).toFixed(1)} s ago` +
      (member.matchIndex ? `, match ${member.matchIndex}` : ""),
    stale: timeoutMs > 0 && agoMs > timeoutMs,
  };
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

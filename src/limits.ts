/**
 * Every bound dlock enforces, in one place (STYLE.md, convention 7). Going over a limit
 * is a clear RESOURCE_EXHAUSTED or INVALID_ARGUMENT for the caller, never a crash.
 *
 * @module
 */

/** The limits. Relations between them are asserted by {@link assertLimits} at start. */
export const limits = {
  /** Named locks that exist at once (held or with waiters). */
  locksMax: 1_000_000,
  /** Waiters queued on one lock. */
  waitersPerLockMax: 10_000,
  /** Open sessions. */
  sessionsMax: 100_000,
  /** Locks one session may hold or wait for at once. */
  locksPerSessionMax: 200_000,
  /** Lock name length in UTF-8 bytes. */
  lockNameBytesMax: 256,
  /** Client name length in UTF-8 bytes. */
  clientNameBytesMax: 256,
  /**
   * Longest acquire timeout (about 23 days): the client's own timer (the timeout plus a
   * grace) must stay below the 2^31 - 1 ms that JavaScript timers can wait.
   */
  acquireTimeoutMsMax: 2_000_000_000,
  /** Session TTL bounds. */
  sessionTtlMsMin: 1_000,
  sessionTtlMsMax: 300_000,
  sessionTtlMsDefault: 10_000,
  /** Remembered results per session for exactly-once retries. */
  dedupeResultsPerSessionMax: 1_024,
  /** Raft: entries and bytes in one append message. */
  entriesPerAppendMax: 1_024,
  appendBytesMax: 2 * 1024 * 1024,
  /** Raft: append messages in flight to one follower. */
  inflightAppendsMax: 64,
  /** Proposals waiting to be appended by the leader before new ones are refused. */
  pendingProposalsMax: 50_000,
  /** Largest gRPC message either side accepts. */
  messageBytesMax: 16 * 1024 * 1024,
  /** Largest command (one log entry's data). */
  commandBytesMax: 64 * 1024,
  /** Filewriter: content of one append, default (flag `--max-content-bytes`). */
  fileContentBytesMaxDefault: 1024 * 1024,
  /** Filewriter: file name length in UTF-8 bytes. */
  fileNameBytesMax: 255,
  /** Raft log entries kept after the applied index before a snapshot compacts them. */
  logEntriesBeforeSnapshot: 10_000,
  /** Client: one attempt of a non-blocking request before failing over (default). */
  clientAttemptTimeoutMsDefault: 5_000,
  /**
   * Leader: the whole forwarded filewriter call, every attempt included. Below the
   * client's attempt timeout, so a hung filewriter is reported by the leader as the
   * filewriter failing before the client gives up on the leader as not answering.
   */
  filewriterCallMsMax: 4_000,
  /** Leader: one attempt of that call (a retry gets what is left of the call's budget). */
  filewriterAttemptMsMax: 2_000,
  /**
   * Time the leader may spend on an append besides the filewriter call: the linearizable
   * read that checks the holder (a heartbeat round) and the network both ways.
   */
  appendLeaderWorkMsMax: 1_000,
} as const;

/**
 * The shortest session TTL a leader grants with these Raft timings (etcd raises lease
 * TTLs the same way). A client presumes its session lost 3/4 of a TTL after its last
 * confirmed keep-alive (src/client/client.ts), so that 3/4 must cover a failover: the
 * followers notice the dead leader within one election timeout (at most 2 × the
 * `--election-ms` base, as it is randomised to [base, 2 × base)), a split vote can cost
 * one more, and the new leader's first heartbeat follows. Below this, killing a leader
 * loses every session. Clamped to `limits.sessionTtlMsMin..sessionTtlMsMax`.
 */
export function sessionTtlMsFloor(raft: { electionMs: number; heartbeatMs: number }): number {
  const electionTimeoutMsMax = 2 * raft.electionMs;
  const failoverMs = 2 * electionTimeoutMsMax + raft.heartbeatMs;
  const floorMs = Math.ceil(failoverMs * 4 / 3);
  return Math.min(limits.sessionTtlMsMax, Math.max(limits.sessionTtlMsMin, floorMs));
}

/**
 * Asserts the relations between limits; called at process start.
 * @throws {Error} when a relation does not hold (a programming error).
 */
export function assertLimits(): void {
  const l = limits;
  const relations: [boolean, string][] = [
    [l.waitersPerLockMax <= l.sessionsMax * l.locksPerSessionMax, "waitersPerLockMax"],
    [l.lockNameBytesMax < l.commandBytesMax, "lockNameBytesMax < commandBytesMax"],
    [l.commandBytesMax < l.appendBytesMax, "commandBytesMax < appendBytesMax"],
    [l.appendBytesMax < l.messageBytesMax, "appendBytesMax < messageBytesMax"],
    [
      l.fileContentBytesMaxDefault < l.messageBytesMax,
      "fileContentBytesMaxDefault < messageBytesMax",
    ],
    [l.sessionTtlMsMin <= l.sessionTtlMsDefault, "sessionTtlMsMin <= default"],
    [l.sessionTtlMsDefault <= l.sessionTtlMsMax, "default <= sessionTtlMsMax"],
    [l.filewriterAttemptMsMax <= l.filewriterCallMsMax, "filewriterAttemptMsMax <= call"],
    [
      l.filewriterCallMsMax + l.appendLeaderWorkMsMax <= l.clientAttemptTimeoutMsDefault,
      "filewriterCallMsMax + appendLeaderWorkMsMax <= clientAttemptTimeoutMsDefault",
    ],
  ];
  for (const [holds, name] of relations) {
    if (!holds) throw new Error(`Cannot start as limits are inconsistent: ${name}`);
  }
}

/**
 * A check of the SQLite file under Deno KV before Deno KV opens it.
 *
 * Why: Deno 2.9.6's KV starts a background queue task on open that panics (the whole
 * process dies with "Deno has panicked", no message of ours) when a page of the database
 * is damaged ("KV queue_next_ready failed: database disk image is malformed"). SQLite's
 * `PRAGMA quick_check` finds such damage first (checks every page and b-tree, not the
 * indexes' contents; about a millisecond for a small store), so the server can refuse
 * the store with a message that says what is wrong, and changes nothing.
 *
 * @module
 */

import { DatabaseSync } from "node:sqlite";
import { StorageError } from "./storage_error.ts";

/**
 * Refuses a damaged SQLite file at `kvPath` (a missing file is fine: the store is new).
 * Opens it read-only, so nothing is written, not even a WAL checkpoint.
 * @throws {StorageError} naming the file and what SQLite found.
 */
export async function checkSqliteFile(dataDir: string, kvPath: string): Promise<void> {
  try {
    await Deno.stat(kvPath);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return;
    throw new StorageError(dataDir, `Cannot read ${kvPath}: ${String(error)}`, { cause: error });
  }
  let findings: string[];
  try {
    const database = new DatabaseSync(kvPath, { readOnly: true });
    try {
      findings = database.prepare("PRAGMA quick_check(20)").all()
        .map((row) => String(Object.values(row)[0]));
    } finally {
      database.close();
    }
  } catch (error) {
    throw new StorageError(
      dataDir,
      `Cannot open the Raft store at ${kvPath} as SQLite cannot read it: ${String(error)}`,
      { cause: error },
    );
  }
  if (findings.length === 1 && findings[0] === "ok") return;
  throw new StorageError(
    dataDir,
    `Cannot open the Raft store at ${kvPath} as its SQLite database is damaged: received ${
      JSON.stringify(findings.join("; ").slice(0, 600))
    } from PRAGMA quick_check. Restore this data directory; if it is lost for good, see ` +
      `"A member that lost its data directory" in the README before starting this member empty.`,
  );
}

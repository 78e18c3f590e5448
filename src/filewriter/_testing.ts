/**
 * Test helper: an in-process filewriter on a free loopback port over a temp directory.
 * @module
 */
import { LogFileBackend } from "./file_backend.ts";
import { type FilewriterServer, startFilewriter } from "./server.ts";

/** A running in-process filewriter and its data directory. */
export type TestFilewriter = {
  server: FilewriterServer;
  backend: LogFileBackend;
  /** Temp directory; the data directory is `${root}/data`. */
  root: string;
  [Symbol.asyncDispose](): Promise<void>;
};

/** Starts a filewriter for one test; dispose it (`await using`) to stop it and clean up. */
export async function startTestFilewriter(maxContentBytes?: number): Promise<TestFilewriter> {
  const root = await Deno.makeTempDir({ prefix: "dlock-filewriter-http-" });
  const backend = await LogFileBackend.open({ directory: `${root}/data` });
  const server = await startFilewriter({
    hostname: "127.0.0.1",
    port: 0,
    backend,
    ...(maxContentBytes === undefined ? {} : { maxContentBytes }),
  });
  return {
    server,
    backend,
    root,
    async [Symbol.asyncDispose]() {
      await server.shutdown();
      await backend.close();
      await Deno.remove(root, { recursive: true });
    },
  };
}

/**
 * A client process for the integration tests, driven by JSON lines on stdin and
 * answering with JSON lines on stdout, so a test can kill -9 or SIGSTOP a real lock
 * holder. Usage: `_agent.ts --servers a,b,c --name NAME --ttl-ms N`.
 *
 * Commands: {"op":"acquire","lock":L}, {"op":"append","file":F,"data":D,"requestId"?:R},
 * {"op":"direct-append","filewriter":A,"file":F,"data":D} (straight to the filewriter
 * with the held token, as a naive client would), {"op":"release"}, {"op":"exit"}.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { connect, DlockError, type LockHandle } from "../../src/client/mod.ts";
import { FilewriterClient } from "../../src/filewriter/mod.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    servers: { type: "string" },
    name: { type: "string", default: "agent" },
    "ttl-ms": { type: "string", default: "2000" },
  },
});

function answer(value: Record<string, unknown>): void {
  console.log(JSON.stringify(value));
}

function failure(error: unknown): Record<string, unknown> {
  return {
    ok: false,
    name: error instanceof Error ? error.name : "Error",
    reason: error instanceof DlockError ? error.reason : null,
    message: error instanceof Error ? error.message : String(error),
  };
}

const client = await connect((values.servers ?? "").split(","), {
  name: values.name,
  ttlMs: Number(values["ttl-ms"]),
});
answer({ event: "connected", sessionId: client.sessionId });
let lock: LockHandle | null = null;

const decoder = new TextDecoderStream();
let buffered = "";
for await (const chunk of Deno.stdin.readable.pipeThrough(decoder)) {
  buffered += chunk;
  let newline = buffered.indexOf("\n");
  while (newline >= 0) {
    const line = buffered.slice(0, newline);
    buffered = buffered.slice(newline + 1);
    newline = buffered.indexOf("\n");
    const command = JSON.parse(line) as Record<string, string>;
    try {
      switch (command.op) {
        case "acquire":
          lock = await client.acquire(command.lock ?? "default");
          answer({ ok: true, token: lock.token });
          break;
        case "append": {
          if (lock === null) throw new Error("no lock");
          const result = await lock.append(
            command.file ?? "",
            command.data ?? "",
            command.requestId === undefined ? {} : { requestId: command.requestId },
          );
          answer({ ok: true, ...result });
          break;
        }
        case "direct-append": {
          if (lock === null) throw new Error("no lock");
          const files = new FilewriterClient(command.filewriter ?? "", { attemptsMax: 1 });
          const result = await files.append({
            file: command.file ?? "",
            lock: lock.name,
            token: lock.token,
            data: command.data ?? "",
          });
          answer({ ok: true, offset: result.offset });
          break;
        }
        case "release":
          if (lock === null) throw new Error("no lock");
          await lock.release();
          answer({ ok: true });
          break;
        case "exit":
          await client.close();
          answer({ ok: true });
          Deno.exit(0);
          break;
        default:
          answer({ ok: false, message: `unknown op ${command.op}` });
      }
    } catch (error) {
      answer(failure(error));
    }
  }
}
await client.close();

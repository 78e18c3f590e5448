/**
 * `dlock filewriter`: runs the fenced storage service until SIGINT/SIGTERM.
 * This file only parses arguments and calls into `src/filewriter/`.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { DlockError } from "../errors.ts";
import { limits } from "../limits.ts";
import {
  createLogger,
  defaultBackendSpec,
  defaultListen,
  type FileBackend,
  openBackend,
  parseListenAddress,
  redactBackendSpec,
  startFilewriter,
  validateMaxContentBytes,
} from "../filewriter/mod.ts";
import { usageFailure } from "./_usage.ts";

const usage = `Usage: dlock filewriter [host:port] [options]

Runs the fenced storage service (HTTP). See src/filewriter/README.md for the API.

Options:
  --listen host:port         address to listen on (default ${defaultListen};
                             a positional host:port is the same)
  --backend SPEC             file:DIR (default ${defaultBackendSpec}) or mongodb://...
  --max-content-bytes N      largest content of one append (default ${limits.fileContentBytesMaxDefault})
  --log-format text|json     log lines on stderr (default text)
  -h, --help                 show this help`;

type Settings = {
  listen: string;
  backend: string;
  maxContentBytes: number;
  logFormat: "text" | "json";
};

/** Parses the arguments; returns the settings, or an exit code after printing why. */
function parseSettings(args: string[]): Settings | number {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      listen: { type: "string" },
      backend: { type: "string", default: defaultBackendSpec },
      "max-content-bytes": { type: "string" },
      "log-format": { type: "string", default: "text" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help === true) {
    console.log(usage);
    return 0;
  }
  if (positionals.length > 1 || (positionals.length === 1 && values.listen !== undefined)) {
    return usageFailure(
      "filewriter",
      usage,
      `give the address once: received ${JSON.stringify(positionals)}`,
    );
  }
  const logFormat = values["log-format"];
  if (logFormat !== "text" && logFormat !== "json") {
    console.error(
      `dlock filewriter: --log-format must be text or json: received ${JSON.stringify(logFormat)}`,
    );
    return 2;
  }
  const maxText = values["max-content-bytes"];
  const maxContentBytes = maxText === undefined
    ? limits.fileContentBytesMaxDefault
    : Number(maxText);
  return {
    listen: values.listen ?? positionals[0] ?? defaultListen,
    backend: values.backend,
    maxContentBytes,
    logFormat,
  };
}

/** Runs `dlock filewriter`; returns the exit code. */
export async function run(args: string[]): Promise<number> {
  let settings: Settings | number;
  try {
    settings = parseSettings(args);
  } catch (error) {
    return usageFailure("filewriter", usage, error);
  }
  if (typeof settings === "number") return settings;
  const log = createLogger(settings.logFormat);
  let address: { hostname: string; port: number };
  try {
    address = parseListenAddress(settings.listen);
    validateMaxContentBytes(settings.maxContentBytes);
  } catch (error) {
    console.error(`dlock filewriter: ${error instanceof Error ? error.message : String(error)}`);
    return 2;
  }
  let backend: FileBackend;
  try {
    backend = await openBackend(settings.backend, { onWarning: (message) => log("warn", message) });
  } catch (error) {
    console.error(
      `dlock filewriter: cannot open backend ${redactBackendSpec(settings.backend)}: ${
        error instanceof Error ? error.message : String(error)
      }`,
    );
    return error instanceof DlockError ? 2 : 1;
  }
  return await serveUntilSignal(settings, address, backend, log);
}

async function serveUntilSignal(
  settings: Settings,
  address: { hostname: string; port: number },
  backend: FileBackend,
  log: ReturnType<typeof createLogger>,
): Promise<number> {
  let server;
  try {
    server = await startFilewriter({
      ...address,
      backend,
      maxContentBytes: settings.maxContentBytes,
      log,
    });
  } catch (error) {
    await backend.close();
    console.error(
      `dlock filewriter: cannot listen on ${settings.listen}: ${
        error instanceof Error ? error.message : String(error)
      }`,
    );
    return 1;
  }
  const { promise: stopped, resolve: stop } = Promise.withResolvers<Deno.Signal>();
  const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
  const handlers = signals.map((signal) => [signal, () => stop(signal)] as const);
  for (const [signal, handler] of handlers) Deno.addSignalListener(signal, handler);
  console.log(
    `dlock filewriter listening on ${server.url} (backend ${
      redactBackendSpec(settings.backend)
    }, max content ${settings.maxContentBytes} bytes)`,
  );
  const signal = await stopped;
  log("info", "stopping", { signal });
  for (const [name, handler] of handlers) Deno.removeSignalListener(name, handler);
  await server.shutdown();
  await backend.close();
  log("info", "stopped");
  return 0;
}

/**
 * Loads dlock's `.proto` files relative to this module, so that both `deno run` and a
 * `deno compile --include proto/` binary find them.
 *
 * @module
 */
// Types only: the peer transport and the native protocol use proto-loader's codecs
// without loading grpc-js.
import type * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { fileURLToPath } from "node:url";

/** Proto files of package `dlock.v1`. */
export type ProtoFile = "lock.proto" | "peer.proto";

/**
 * Loader options per file. The client API uses camelCase names with defaults filled in
 * (the same options as src/client/_proto.ts, so both sides see the same shapes); peer
 * messages keep snake_case and field presence (`optional` fields stay absent).
 */
const loaderOptions: Record<ProtoFile, protoLoader.Options> = {
  "lock.proto": { keepCase: false, longs: Number, enums: String, defaults: true, oneofs: true },
  "peer.proto": { keepCase: true, longs: Number, enums: String, defaults: false, oneofs: true },
};

/** Loads `proto/dlock/v1/<file>` with the options of {@link loaderOptions}. */
export function loadPackageDefinition(file: ProtoFile): protoLoader.PackageDefinition {
  const url = new URL(`../../proto/dlock/v1/${file}`, import.meta.url);
  return protoLoader.loadSync(fileURLToPath(url), loaderOptions[file]);
}

/** The service definition of `dlock.v1.<service>` in `file`. */
export function loadService(
  file: ProtoFile,
  service: "Lock" | "Peer",
): grpc.ServiceDefinition {
  const definition = loadPackageDefinition(file);
  const found = definition[`dlock.v1.${service}`];
  if (found === undefined || !isServiceDefinition(found)) {
    throw new Error(`Cannot load service dlock.v1.${service} as ${file} does not define it`);
  }
  return found;
}

function isServiceDefinition(value: unknown): value is grpc.ServiceDefinition {
  if (typeof value !== "object" || value === null) return false;
  return Object.values(value).every((method) =>
    typeof method === "object" && method !== null && "path" in method &&
    "requestSerialize" in method
  );
}

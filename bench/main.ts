/**
 * Entry point of `deno task bench` (the same as `dlock bench`).
 * @module
 */
import { run } from "./cli.ts";

if (import.meta.main) {
  Deno.exit(await run(Deno.args));
}

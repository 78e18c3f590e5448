/**
 * A tiny TCP echo listener for the network self-test: `probe.ts listen HOST PORT` echoes
 * every connection's bytes back until killed, and prints `listening` once bound. It runs inside a
 * server's network namespace (`ip netns exec`), where the harness cannot listen itself.
 *
 * @module
 */

if (import.meta.main) {
  const [mode, hostname, portText] = Deno.args;
  if (mode !== "listen" || hostname === undefined || portText === undefined) {
    console.error("usage: probe.ts listen HOST PORT");
    Deno.exit(2);
  }
  const listener = Deno.listen({ hostname, port: Number(portText) });
  console.log("listening");
  for await (const connection of listener) {
    connection.readable.pipeTo(connection.writable).catch(() => {});
  }
}

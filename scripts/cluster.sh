#!/usr/bin/env sh
# Starts, stops or shows a local dlock cluster (3 lock servers and a filewriter):
#   scripts/cluster.sh up [--servers 5] [--dir .dlock] [--base-port 5000] [--filewriter-port 8080]
#   scripts/cluster.sh status
#   scripts/cluster.sh down
# A thin wrapper around `dlock cluster`; see `scripts/cluster.sh --help`.
set -eu
root="$(cd "$(dirname "$0")/.." && pwd)"
exec deno run -A --quiet --config "$root/deno.json" "$root/src/main.ts" cluster "$@"

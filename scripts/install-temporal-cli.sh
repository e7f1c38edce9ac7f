#!/usr/bin/env bash
# Builds the official Temporal CLI (dev server + Web UI) into the project's cache, once.
# Machines without internet still reach the Go module proxy, so `go install` works where the
# SDK's own download does not. Later tags carry a `replace` directive and cannot be installed
# this way, hence the pinned version.
set -euo pipefail
version="${TEMPORAL_CLI_VERSION:-v1.5.1}"
cache="${BACKFILL_CACHE_DIR:-$HOME/.cache/backfill}"
bin="$cache/bin/temporal"

if [ -n "${TEMPORAL_CLI_PATH:-}" ] && [ -x "${TEMPORAL_CLI_PATH}" ]; then
  echo "temporal CLI: using TEMPORAL_CLI_PATH=${TEMPORAL_CLI_PATH}"
  exit 0
fi
if [ -x "$bin" ] && "$bin" --version >/dev/null 2>&1; then
  echo "temporal CLI: cached at $bin ($("$bin" --version | head -n 1))"
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  echo "temporal CLI: Go is not installed; install Go, or set TEMPORAL_CLI_PATH to an existing temporal binary," >&2
  echo "or let the Temporal SDK download the dev server at first use (needs internet)." >&2
  exit 0
fi
mkdir -p "$cache/bin"
echo "temporal CLI: building github.com/temporalio/cli/cmd/temporal@$version with Go (a few minutes, once) ..."
start=$(date +%s)
GOBIN="$cache/bin" GOFLAGS="${GOFLAGS:-} -trimpath" go install "github.com/temporalio/cli/cmd/temporal@$version"
echo "temporal CLI: built $bin in $(( $(date +%s) - start )) s ($("$bin" --version | head -n 1))"

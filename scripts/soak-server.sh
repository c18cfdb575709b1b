#!/usr/bin/env bash
# The server soak for minutes instead of make test's seconds: 64 openai-npm streaming
# clients against examples/server (a third complete, a third disconnect mid-stream, a third
# cancel; the queue overflows into 429s), then the checks that the server is back where it
# started, then a shutdown with streams in flight (examples/server/soak_test.go).
#   scripts/soak-server.sh [DURATION]     default 5m
set -euo pipefail
cd "$(dirname "$0")/.."
go test -count=1 -v -timeout 2h -run '^TestSoak$' ./examples/server -args -soak="${1:-5m}"

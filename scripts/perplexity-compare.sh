#!/usr/bin/env bash
# Compares the perplexity of examples/perplexity with upstream's llama-perplexity from
# the same llama.cpp build, on the same model and text, with the same settings.
#   scripts/perplexity-compare.sh [MODEL.gguf [TEXT]] [-- extra flags for both, e.g. -c 256]
# Without MODEL: a synthetic llama-tiny F16 model (random weights; written with
# examples/gguf). Without TEXT: llama.cpp's README.md. Builds llama-perplexity when missing
# (LLAMA_TOOLS=llama-perplexity scripts/build-llama.sh). Exits 1 when the two differ by
# more than 0.1%.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
backend=${BACKEND:-cpu}
cd "$root"
model=${1:-}
text=${2:-}
shift $(( $# > 2 ? 2 : $# ))
[ "${1:-}" = "--" ] && shift
extra=("$@")
[ ${#extra[@]} -gt 0 ] || extra=(-c 128)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

bin=third_party/build/$backend/bin/llama-perplexity
if [ ! -x "$bin" ]; then
  echo "perplexity-compare: building llama-perplexity" >&2
  LLAMA_TOOLS="llama-perplexity" bash scripts/build-llama.sh "$backend" >&2
fi
if [ -z "$model" ]; then
  model=$tmp/llama-tiny-f16.gguf
  go run ./examples/gguf synth -shape llama-tiny -type f16 -o "$model" >&2
fi
[ -n "$text" ] || text=third_party/llama.cpp/README.md
tags=()
[ "$backend" = cpu ] || tags=(-tags "$backend")
go build "${tags[@]}" -o "$tmp/perplexity" ./examples/perplexity

threads=$(getconf _NPROCESSORS_ONLN)
echo "model: $model  text: $text  flags: ${extra[*]}  threads: $threads" >&2
ours=$("$tmp/perplexity" -m "$model" -f "$text" -t "$threads" "${extra[@]}" 2>"$tmp/ours.log") ||
  { cat "$tmp/ours.log" >&2; exit 1; }
"$bin" -m "$model" -f "$text" -t "$threads" "${extra[@]}" >"$tmp/up.log" 2>&1 ||
  { tail -20 "$tmp/up.log" >&2; exit 1; }
theirs=$(grep -o 'Final estimate: PPL = .*' "$tmp/up.log")
echo "llamago:          $ours"
echo "llama-perplexity: $theirs"
a=$(sed 's/.*PPL = \([0-9.]*\).*/\1/' <<<"$ours")
b=$(sed 's/.*PPL = \([0-9.]*\).*/\1/' <<<"$theirs")
awk -v a="$a" -v b="$b" 'BEGIN {
  r = a / b; d = r > 1 ? r - 1 : 1 - r
  printf "ratio llamago/upstream: %.7f (%.5f%% apart)\n", r, 100 * d
  exit (d > 0.001)
}'

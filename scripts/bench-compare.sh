#!/usr/bin/env bash
# Benchmarks llamago against llama.cpp's own llama-bench, built from the same pinned
# tree for the same backend, on the same model with the same arguments, alternating
# (ours, theirs, ours, theirs, ...), and prints a table of both with the ratio.
#
#   scripts/bench-compare.sh [MODEL.gguf] [llama-bench arguments...]
#
# Without a model, a synthetic Qwen2-0.5B-shape Q8_0 model (random weights) is written
# once to the cache (see examples/bench: `bench synth`). The arguments go to both
# programs unchanged (default: -p 512 -n 128 -r 5); -m and -o are set here. Rounds
# alternate which program runs first. Our runs
# add -app (and -app-device for GPU backends): generation through GenerateText with
# the default sampler chain, reported as "tgN (app) vs tgN" against llama-bench's tgN.
#
# Examples:
#   scripts/bench-compare.sh -p 64 -n 32 -r 3
#   BACKEND=cuda scripts/bench-compare.sh model.gguf -ngl 99 -fa 1
#
# Environment:
#   BACKEND    cpu (default), cuda, metal, vulkan: the archives and Go build tag to use
#   ROUNDS     alternating rounds (default 3)
#   OUT        directory for the JSON files (default: a new temporary directory)
#   APP        extra flags for our runs (default: -app, plus -app-device on GPU backends;
#              APP= to measure llama-bench's tests only)
#   NO_BUILD   1: use the binaries already built (skip CMake and go build)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
backend=${BACKEND:-cpu}
rounds=${ROUNDS:-3}
say() { echo "bench-compare: $*" >&2; }
die() { say "error: $*"; exit 1; }

tags=()
case "$backend" in
  cpu) ;;
  cuda|metal|vulkan) tags=(-tags "$backend") ;;
  *) die "unknown BACKEND '$backend' (cpu, cuda, metal, vulkan)" ;;
esac
if [ -z "${APP+set}" ]; then
  APP="-app"
  [ "$backend" = cpu ] || APP="-app -app-device"
fi

model=""
if [ $# -gt 0 ] && [[ "$1" == *.gguf ]]; then
  model=$1
  shift
  [ -f "$model" ] || die "no model file $model"
fi
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(-p 512 -n 128 -r 5)
for a in "${args[@]}"; do
  case "$a" in
    -m|--model|-o|--output|-oe|--output-err) die "$a is set by this script (give the model as the first argument)" ;;
  esac
done

out=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/bench-compare.XXXXXX")}
mkdir -p "$out"
theirs_bin=$root/third_party/build/$backend/bin/llama-bench
ours_bin=$out/bench

if [ "${NO_BUILD:-0}" != 1 ]; then
  [ -f third_party/llama.cpp/CMakeLists.txt ] || [ -n "${LLAMA_CPP_DIR:-}" ] || bash scripts/fetch-llama.sh
  say "building llama.cpp ($backend) and upstream llama-bench from the pinned tree"
  LLAMA_TOOLS=llama-bench bash scripts/build-llama.sh "$backend"
  say "building examples/bench"
  go build "${tags[@]}" -o "$ours_bin" ./examples/bench
else
  [ -x "$ours_bin" ] || go build "${tags[@]}" -o "$ours_bin" ./examples/bench
fi
[ -x "$theirs_bin" ] || die "no $theirs_bin: run LLAMA_TOOLS=llama-bench bash scripts/build-llama.sh $backend"

if [ -z "$model" ]; then
  model=$("$ours_bin" synth)
fi
say "model: $model"
say "arguments: ${args[*]}; $rounds rounds; results in $out"

ours_files=() theirs_files=()
ours() {
  say "round $i/$rounds: llamago"
  # shellcheck disable=SC2086
  "$ours_bin" -m "$model" "${args[@]}" $APP -o json >"$out/ours-$i.json"
  ours_files+=("$out/ours-$i.json")
}
theirs() {
  say "round $i/$rounds: llama-bench"
  "$theirs_bin" -m "$model" "${args[@]}" -o json >"$out/theirs-$i.json"
  theirs_files+=("$out/theirs-$i.json")
}
# Who runs first alternates too: a machine whose speed drifts within a round (a VM's
# CPU credits, thermal limits) would otherwise favour one side every round.
for ((i = 1; i <= rounds; i++)); do
  if ((i % 2)); then ours; theirs; else theirs; ours; fi
done

ours_list=$(IFS=,; echo "${ours_files[*]}")
theirs_list=$(IFS=,; echo "${theirs_files[*]}")
echo
"$ours_bin" compare -ours "$ours_list" -theirs "$theirs_list"

#!/usr/bin/env bash
# The CUDA acceptance run, on a machine with one or more NVIDIA GPUs (see README, "GPU"):
# builds llama.cpp for CUDA with upstream's llama-bench, runs every test with -tags cuda,
# writes synthetic Llama-3-8B and Llama-3.2-1B shape Q4_K_M models, and compares
# examples/bench with llama-bench (one GPU, then split across all GPUs when there are
# several), and the serving engine (`bench batched`) with llama-batched-bench. Logs and
# JSON go to $OUT (default ./gpu-results).
#   bash scripts/gpu-validate.sh            # everything
#   STEPS="bench" bash scripts/gpu-validate.sh
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=${OUT:-$root/gpu-results}
mkdir -p "$out"
steps=${STEPS:-build test models bench batched multi}
export BACKEND=cuda
ngpu=$(nvidia-smi -L 2>/dev/null | wc -l)
log() { echo "== $(date +%T) $*" | tee -a "$out/summary.txt"; }
has() { [[ " $steps " == *" $1 "* ]]; }

log "start: $ngpu GPU(s): $(nvidia-smi --query-gpu=name --format=csv,noheader | sort | uniq -c | xargs)"
if has build; then
  log "build (CUDA archives + llama-bench)"
  LLAMA_TOOLS="llama-bench llama-perplexity llama-batched-bench llama-completion llama-speculative" bash scripts/build-llama.sh cuda >"$out/build.log" 2>&1 || { tail -40 "$out/build.log"; log "BUILD FAILED"; exit 1; }
  go build -tags cuda -o "$out/bench" ./examples/bench || { log "GO BUILD FAILED"; exit 1; }
fi
if has test; then
  log "go vet + go test -tags cuda ./..."
  go vet -tags cuda ./... >"$out/vet.log" 2>&1 || log "VET FAILED"
  pkgs=$(go list ./...)
  # The server's tests drive it with the openai npm package: they need node and npm.
  command -v node >/dev/null || { pkgs=$(grep -v /examples/server <<<"$pkgs"); log "no node: skipping examples/server"; }
  # shellcheck disable=SC2086
  if go test -tags cuda -count=1 -timeout 20m $pkgs >"$out/test.log" 2>&1; then log "tests passed"; else log "TESTS FAILED"; fi
  grep -E '^(ok|FAIL|---)' "$out/test.log" | tee -a "$out/summary.txt"
fi
bench=$out/bench
[ -x "$bench" ] || go build -tags cuda -o "$bench" ./examples/bench
if has models; then
  log "synthetic models"
  for shape in llama3.2-1b llama3-8b; do
    p=$("$bench" synth -shape "$shape" -type q4_k_m) || { log "SYNTH $shape FAILED"; exit 1; }
    echo "$p" >"$out/model-$shape"
    log "$shape: $p ($(du -h "$p" | cut -f1))"
  done
fi
if has bench; then
  for shape in llama3.2-1b llama3-8b; do
    m=$(cat "$out/model-$shape")
    log "bench $shape, one GPU, flash attention on"
    CUDA_VISIBLE_DEVICES=0 NO_BUILD=1 ROUNDS=${ROUNDS:-3} OUT="$out/bench-$shape" \
      bash scripts/bench-compare.sh "$m" -ngl 99 -fa 1 -p 512 -n 128 -r 5 2>&1 | tee "$out/bench-$shape.txt"
  done
fi
if has batched; then
  for shape in llama3.2-1b llama3-8b; do
    m=$(cat "$out/model-$shape")
    # The rows of issue "Speed where users feel it": greedy on the device, the default
    # chain (CPU and device), 1024-token prompts; then a unified cache and CPU greedy.
    for variant in -device-sampling "-sampling default" "-sampling default -device-sampling" \
      "-device-sampling -npp 1024 -npl 8,32" "-device-sampling -kvu" ""; do
      log "engine vs llama-batched-bench, $shape ${variant:-(split cache, CPU greedy)}, one GPU"
      # shellcheck disable=SC2086
      CUDA_VISIBLE_DEVICES=0 "$bench" batched -m "$m" -ngl 99 -fa on -npp 128 -ntg 128 -npl 8,32,64 $variant -raw \
        -r "${ROUNDS:-3}" -upstream third_party/build/cuda/bin/llama-batched-bench 2>&1 | tee "$out/batched-$shape${variant// /}.txt"
    done
  done
fi
if has multi && [ "$ngpu" -ge 2 ]; then
  m=$(cat "$out/model-llama3-8b" 2>/dev/null || true)
  log "greedy parity across split modes (${m:-synthetic mistral-256})"
  LLAMAGO_GPU_MODEL=$m go test -tags cuda -count=1 -run 'TestGPUMultiSplit' -v ./llama/ >"$out/multi-test.log" 2>&1 &&
    log "split parity passed" || log "SPLIT PARITY FAILED"
  grep -E 'split|PASS|FAIL' "$out/multi-test.log" | tee -a "$out/summary.txt"
  for sm in layer tensor row; do
    [ -n "$m" ] || break
    log "bench 8B across $ngpu GPUs, split mode $sm"
    NO_BUILD=1 ROUNDS=2 APP="-app -app-device" OUT="$out/bench-split-$sm" \
      bash scripts/bench-compare.sh "$m" -ngl 99 -fa 1 -sm "$sm" -p 512 -n 128 -r 3 2>&1 | tee "$out/bench-split-$sm.txt"
  done
fi
log done

#!/usr/bin/env bash
# Packs what a bare, offline GPU machine needs to build and test this checkout into .device/
# (ignored by git), for a runner that copies the working tree there:
#   .device/go.tar.xz          a Go toolchain (GO_TOOLCHAIN_TAR=<file> reuses a packed one)
#   .device/vendor.tar.xz      the module's dependencies (go mod vendor, compressed: the
#                              runner carries at most 64 MiB)
#   .device/llama.cpp.tar.xz   the pinned llama.cpp tree, with models/ (vocabularies and chat
#                              templates the tests read)
#   .device/run.sh             the wrapper to run there: bash .device/run.sh '<command>'
# Then on the GPU machine, from the repository root:
#   bash .device/run.sh 'make BACKEND=cuda test'
#   bash .device/run.sh 'bash scripts/gpu-validate.sh'
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=.device
mkdir -p "$out"
grep -qxF '/.device/' .git/info/exclude 2>/dev/null || echo '/.device/' >>.git/info/exclude

if [ -n "${GO_TOOLCHAIN_TAR:-}" ]; then
  cp "$GO_TOOLCHAIN_TAR" "$out/go.tar.xz"
else
  goroot=$(go env GOROOT)
  g=$(basename "$goroot")
  (cd "$goroot/.." && tar --exclude="$g/test" --exclude='*/testdata' --exclude='*_test.go' --exclude="$g/doc" \
    --exclude="$g/api" --exclude="$g/misc" -cf - "$g") | xz -T0 -6 >"$out/go.tar.xz"
fi
tmp=$(mktemp -d) && trap 'rm -rf "$tmp"' EXIT
go mod vendor -o "$tmp/vendor" && tar -C "$tmp" -cf - vendor | xz -T0 -6 >"$out/vendor.tar.xz"
rm -rf "$out/vendor"
bash scripts/fetch-llama.sh
src=${LLAMA_CPP_DIR:-third_party/llama.cpp}
# Of the vocabularies only those of the synthetic shapes and FuzzTokenize travel (the runner
# carries 64 MiB); tests that walk every vocabulary then see these.
keep=" ${VOCABS:-llama-bpe llama-spm qwen2 bert-bge gpt-2} "
drop=()
for f in "$src"/models/ggml-vocab-*.gguf.inp "$src"/models/ggml-vocab-*.gguf; do
  v=$(basename "$f"); v=${v#ggml-vocab-}; v=${v%%.gguf*}
  [[ "$keep" == *" $v "* ]] || drop+=(--exclude="./models/ggml-vocab-$v.gguf*")
done
# Nor what a CUDA build with the tools and the tests never read: other backends, the web UI.
for d in blas cann et hexagon hip metal musa opencl openvino sycl virtgpu vulkan webgpu zdnn zendnn; do
  drop+=(--exclude="./ggml/src/ggml-$d")
done
drop+=(--exclude=./tools/ui --exclude=./tools/server --exclude=./benches)
(cd "$src" && tar --exclude=./.git --exclude=./docs --exclude=./media --exclude='./build*' "${drop[@]}" -cf - .) |
  xz -T0 -6 >"$out/llama.cpp.tar.xz"
cat >"$out/run.sh" <<'RUN'
#!/usr/bin/env bash
# Runs a command on the GPU machine with the Go toolchain, vendored modules and llama.cpp
# tree of .device/ (see scripts/gpu-pack.sh).
set -euo pipefail
d=$PWD/.device
[ -x /tmp/llamago-go/go/bin/go ] || { mkdir -p /tmp/llamago-go && tar xJf "$d/go.tar.xz" -C /tmp/llamago-go; }
[ -f /tmp/llamago-llama.cpp/CMakeLists.txt ] || { mkdir -p /tmp/llamago-llama.cpp && tar xJf "$d/llama.cpp.tar.xz" -C /tmp/llamago-llama.cpp; }
rm -rf vendor && tar xJf "$d/vendor.tar.xz"
export PATH=/tmp/llamago-go/go/bin:/usr/local/cuda/bin:$PATH GOTOOLCHAIN=local GOFLAGS=-mod=vendor GOPROXY=off
export GOCACHE=${GOCACHE:-/tmp/llamago-gocache} LLAMA_CPP_DIR=/tmp/llamago-llama.cpp
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
echo "go: $(go version), cores: $(nproc)"
exec bash -c "$*"
RUN
du -sh "$out"/* | sort -h

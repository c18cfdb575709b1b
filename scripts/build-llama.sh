#!/usr/bin/env bash
# Builds llama.cpp's static archives for one backend with CMake.
#   scripts/build-llama.sh [cpu|cuda|metal|vulkan]     (default: $BACKEND or cpu)
#   scripts/build-llama.sh internal-tree    only (re)writes include/llama-internal/llamago-internal-tree.h
#                                           for headers copied from this source before it existed
# Every backend is built with llama.cpp's RPC backend (libggml-rpc.a, small): binaries link it
# only with the Go build tag rpc (llama/cgo_rpc.go); without it llama/rpc_stub.go stands in.
# Output, which the cgo files in llama/ link against (llama/native.h checks it is there):
#   <dir>/<backend>/lib/*.a     the archives of this backend
#   <dir>/<backend>/llamago-backend.h   written last: this backend's build is complete
#   <dir>/<backend>/bin/        upstream tools named in LLAMA_TOOLS (e.g. "llama-bench")
#   <dir>/include/              the public headers (the same for every backend),
#                               llama-internal/: llama.cpp's src/*.h, and llamago-internal-tree.h:
#                               their sha256, which llama/device_rows.cpp checks
# Environment:
#   LLAMAGO_BUILD_DIR    <dir> above (default third_party/build; cmd/llamago install: the user cache)
#   LLAMA_CPP_DIR        source tree (default third_party/llama.cpp, see fetch-llama.sh)
#   LLAMAGO_CPU          native (default): tuned for this machine's CPU (-march=native);
#                        portable: a baseline that runs on other machines (x86-64-v3 on x86-64:
#                        AVX2, FMA, F16C, BMI2, no AVX-512; armv8.2-a+dotprod+fp16 on arm64)
#   CUDA_ARCHITECTURES   CMake CUDA architectures (default: native, the GPUs of this machine)
#   LLAMA_TOOLS          upstream tools to build too, e.g. "llama-bench llama-perplexity"
#   CMAKE_EXTRA_ARGS     anything else for the CMake configure step
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
backend=${1:-${BACKEND:-cpu}}
src=${LLAMA_CPP_DIR:-$root/third_party/llama.cpp}
build_dir=${LLAMAGO_BUILD_DIR:-$root/third_party/build}
out=$build_dir/$backend
inc=$build_dir/include
cpu=${LLAMAGO_CPU:-native}
cmake_dir=$out/cmake

say() { echo "build-llama: $*" >&2; }
die() { say "error: $*"; exit 1; }

[ -f "$src/CMakeLists.txt" ] || die "no llama.cpp source at $src: run 'make deps' (scripts/fetch-llama.sh) first"

# source_tree prints the git tree hash of the source: "modified" for a checkout with local
# changes, "unknown" outside git.
source_tree() {
  if [ ! -e "$src/.git" ]; then echo unknown; return; fi
  local rc=0
  git -C "$src" diff --quiet HEAD || rc=$?
  case $rc in
    0) git -C "$src" rev-parse 'HEAD^{tree}' ;;
    1) echo modified ;;
    *) return "$rc" ;;
  esac
}

# headers_hash prints the sha256 of llama.cpp's internal headers (src/*.h, with their names):
# the same for a git checkout and for an archive of the same tree.
headers_hash() {
  (cd "$src/src" && for h in $(LC_ALL=C ls -- *.h); do printf '== %s\n' "$h"; cat -- "$h"; done) | sha256sum | cut -d' ' -f1
}

# write_internal_tree records which internal headers were copied: llama/device_rows.cpp
# builds only against the headers it was checked against. Rewrites the file only when it changes.
write_internal_tree() {
  local header=$inc/llama-internal/llamago-internal-tree.h text
  text="/* Written by scripts/build-llama.sh: the sha256 of these headers (llama/device_rows.cpp checks it). */
#define LLAMAGO_INTERNAL_HEADERS \"$(headers_hash)\""
  if [ "$(cat "$header" 2>/dev/null)" != "$text" ]; then printf '%s\n' "$text" >"$header"; fi
}

if [ "$backend" = internal-tree ]; then
  # For a build from before the file existed: only when its headers are this source's.
  for h in "$src"/src/*.h; do
    cmp -s "$h" "$inc/llama-internal/${h##*/}" ||
      die "$inc/llama-internal/${h##*/} is not $h: build llama.cpp again (scripts/build-llama.sh <backend>)"
  done
  write_internal_tree
  say "$inc/llama-internal/llamago-internal-tree.h: $(headers_hash)"
  exit 0
fi

if ! command -v cmake >/dev/null; then
  if command -v apt-get >/dev/null; then
    say "installing cmake with apt-get"
    sudo_cmd=""; [ "$(id -u)" = 0 ] || sudo_cmd=sudo
    $sudo_cmd apt-get update -qq && $sudo_cmd apt-get install -y -qq cmake >/dev/null
  else
    die "cmake is required (https://cmake.org/download/)"
  fi
fi

args=(
  -DCMAKE_BUILD_TYPE=Release
  -DBUILD_SHARED_LIBS=OFF
  -DCMAKE_POSITION_INDEPENDENT_CODE=ON
  -DLLAMA_BUILD_TESTS=OFF
  -DLLAMA_BUILD_EXAMPLES=ON # configured for llama-speculative; only LLAMA_TOOLS are built
  -DLLAMA_BUILD_SERVER=OFF
  -DLLAMA_BUILD_APP=OFF
  -DLLAMA_BUILD_TOOLS=ON
  -DLLAMA_BUILD_COMMON=ON
  -DLLAMA_OPENSSL=OFF
  -DGGML_BLAS=OFF
  # RPC over plain TCP: llamago's relay (llama/rpc_relay.go) forwards the byte stream, so the
  # RDMA transport, which moves traffic off that stream, stays off.
  -DGGML_RPC=ON
  -DGGML_RPC_RDMA=OFF
)
case "$cpu" in
  native) args+=(-DGGML_NATIVE=ON) ;;
  portable)
    # Named explicitly rather than left to ggml's defaults, which drop to SSE when
    # SOURCE_DATE_EPOCH is set or when cross-compiling.
    args+=(-DGGML_NATIVE=OFF)
    case "$(uname -m)" in
      x86_64|amd64) args+=(-DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_BMI2=ON -DGGML_FMA=ON
                           -DGGML_F16C=ON -DGGML_AVX_VNNI=OFF -DGGML_AVX512=OFF) ;;
      aarch64|arm64) args+=(-DGGML_CPU_ARM_ARCH=armv8.2-a+dotprod+fp16) ;;
      *) die "LLAMAGO_CPU=portable: no baseline named for $(uname -m)" ;;
    esac ;;
  *) die "LLAMAGO_CPU=$cpu: want native or portable" ;;
esac
# ggml turns Metal on by default on macOS; only the metal backend links it.
[ "$backend" = metal ] || args+=(-DGGML_METAL=OFF)
case "$backend" in
  cpu) ;;
  cuda)
    command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ] ||
      die "BACKEND=cuda needs the CUDA toolkit (nvcc not found; install CUDA or put /usr/local/cuda/bin on PATH)"
    command -v nvcc >/dev/null || export PATH=/usr/local/cuda/bin:$PATH
    args+=(-DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCHITECTURES:-native}") ;;
  metal)
    [ "$(uname -s)" = Darwin ] || die "BACKEND=metal builds only on macOS"
    args+=(-DGGML_METAL=ON -DGGML_METAL_EMBED_LIBRARY=ON) ;;
  vulkan)
    args+=(-DGGML_VULKAN=ON) ;;
  *) die "unknown backend '$backend' (cpu, cuda, metal, vulkan)" ;;
esac
# shellcheck disable=SC2206
args+=(${CMAKE_EXTRA_ARGS:-})

generator=()
if command -v ninja >/dev/null && [ ! -f "$cmake_dir/Makefile" ]; then generator=(-G Ninja); fi

say "configuring $backend ($cpu CPU code) in ${cmake_dir#"$root"/}"
mkdir -p "$out"
cmake -S "$src" -B "$cmake_dir" "${generator[@]}" "${args[@]}" >"$out/configure.log" 2>&1 ||
  { tail -30 "$out/configure.log" >&2; die "CMake configure failed (log: $out/configure.log)"; }

jobs=$(getconf _NPROCESSORS_ONLN 2>/dev/null || sysctl -n hw.ncpu 2>/dev/null || echo 2)
# shellcheck disable=SC2086
targets=(llama llama-common mtmd ${LLAMA_TOOLS:-})
say "building ${targets[*]} with $jobs jobs"
cmake --build "$cmake_dir" --config Release -j "$jobs" --target "${targets[@]}"

# Collect what the cgo build needs at fixed paths: the archives of this backend and the headers.
rm -f "$out/llamago-backend.h"
rm -rf "$out/lib" && mkdir -p "$out/lib" "$out/bin" "$inc/common/jinja"
find "$cmake_dir" -name '*.a' -not -path '*/CMakeFiles/*' -exec cp {} "$out/lib/" \;
cp "$src"/include/*.h "$src"/ggml/include/*.h "$src"/tools/mtmd/mtmd.h "$src"/tools/mtmd/mtmd-helper.h "$inc/"
# The shim reaches common/ (chat templates, JSON schema) through a few JSON-in/JSON-out calls.
cp "$src"/common/*.h "$inc/common/"
cp "$src"/common/jinja/*.h "$inc/common/jinja/"
# llama.cpp's internal headers, for the one shim file that reads many rows with one wait.
rm -rf "$inc/llama-internal" && mkdir -p "$inc/llama-internal" && cp "$src"/src/*.h "$inc/llama-internal/"
write_internal_tree
for t in ${LLAMA_TOOLS:-}; do cp "$cmake_dir/bin/$t" "$out/bin/"; done

# The CUDA libraries depend on the toolkit's location and on whether CMake found NCCL:
# cgo_cuda.go links -lllamago-cuda-deps, a GNU ld linker script written here.
if [ "$backend" = cuda ]; then
  cache_var() { sed -n "s/^$1:[A-Z]*=//p" "$cmake_dir/CMakeCache.txt" | head -1; }
  cuda_lib=$(cache_var CUDAToolkit_LIBRARY_DIR)
  cuda_lib=${cuda_lib:-/usr/local/cuda/lib64}
  {
    echo "/* Written by scripts/build-llama.sh: the libraries ggml-cuda of this build needs. */"
    echo "SEARCH_DIR(\"$cuda_lib\")"
    echo "SEARCH_DIR(\"$cuda_lib/stubs\")"
    libs="-lcudart -lcublas -lcublasLt -lcuda"
    nccl=$(cache_var NCCL_LIBRARY)
    if [ -n "$nccl" ] && [ "${nccl%NOTFOUND}" = "$nccl" ]; then
      echo "SEARCH_DIR(\"$(dirname "$nccl")\")"
      libs="$libs -lnccl"
    fi
    echo "INPUT($libs)"
  } >"$out/lib/libllamago-cuda-deps.so"
  say "CUDA link dependencies: $(tail -1 "$out/lib/libllamago-cuda-deps.so")"
fi
tree=$(source_tree)
echo "$tree" >"$out/source-tree"
# llama/cgo_<backend>.go checks for this file: the archives of this backend are complete.
{
  echo "/* Written by scripts/build-llama.sh after the archives of this backend. */"
  echo "#define LLAMAGO_BUILD_LAYOUT 2 /* 2: with libmtmd (multimodal) */"
  echo "#define LLAMAGO_BACKEND \"$backend\""
  echo "#define LLAMAGO_CPU \"$cpu\""
  echo "#define LLAMAGO_LLAMA_CPP_TREE \"$tree\""
} >"$out/llamago-backend.h"
say "done: $(ls "$out/lib" | tr '\n' ' ')"

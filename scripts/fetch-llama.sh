#!/usr/bin/env bash
# Materialises the llama.cpp release pinned in third_party/llama.cpp.lock into third_party/llama.cpp
# (or LLAMA_CPP_DEST: cmd/llamago install keeps its trees in the per-user cache).
#
# Where the source comes from, first match wins:
#   LLAMA_CPP_DIR=<checkout>   your own tree, used in place (a warning if it is not the pinned tree)
#   LLAMA_CPP_ARCHIVE=<file>   offline: the npm tarball (node-llama-cpp-*.tgz) or its gitRelease.bundle
#   the download cache         $LLAMAGO_CACHE, default ~/.cache/llamago (a second build needs no network)
#   npm pack                   downloads the npm package that ships the release as a git bundle
# The npm tarball's integrity and the tree hash of the checkout are verified against the lock.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=../third_party/llama.cpp.lock
. "$root/third_party/llama.cpp.lock"
dest=${LLAMA_CPP_DEST:-$root/third_party/llama.cpp}
cache=${LLAMAGO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/llamago}
tarball=$cache/${NPM_PACKAGE/@/-}.tgz

say() { echo "fetch-llama: $*" >&2; }
die() { say "error: $*"; exit 1; }

# tree_of prints the tree hash of a clean git checkout rooted exactly at $1, or nothing.
tree_of() {
  [ -e "$1/.git" ] || return 0
  git -C "$1" diff --quiet HEAD 2>/dev/null || { echo modified; return 0; }
  git -C "$1" rev-parse 'HEAD^{tree}' 2>/dev/null || true
}

sha512_integrity() { echo "sha512-$(openssl dgst -sha512 -binary "$1" | openssl base64 -A)"; }

if [ -n "${LLAMA_CPP_DIR:-}" ]; then
  [ -f "$LLAMA_CPP_DIR/include/llama.h" ] || die "LLAMA_CPP_DIR=$LLAMA_CPP_DIR has no include/llama.h"
  tree=$(tree_of "$LLAMA_CPP_DIR")
  if [ "$tree" != "$LLAMA_CPP_TREE" ]; then
    say "warning: LLAMA_CPP_DIR is not the pinned tree $LLAMA_CPP_RELEASE ($LLAMA_CPP_TREE); got '${tree:-not a git checkout}'. Building it anyway."
  fi
  exit 0
fi

if [ "$(tree_of "$dest")" = "$LLAMA_CPP_TREE" ]; then
  exit 0 # already materialised and unmodified
fi
[ ! -e "$dest" ] || [ -e "$dest/.git" ] || die "$dest exists but is not a git checkout: remove it"
[ "$(tree_of "$dest")" != modified ] || die "$dest has local changes: commit them elsewhere or remove the directory"

command -v git >/dev/null || die "git is required"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

bundle=""
archive=${LLAMA_CPP_ARCHIVE:-}
case "$archive" in
  *.bundle) bundle=$archive ;;
  "")
    if [ ! -f "$tarball" ]; then
      command -v npm >/dev/null || die "npm is required to download $NPM_PACKAGE (or set LLAMA_CPP_ARCHIVE / LLAMA_CPP_DIR)"
      say "downloading $NPM_PACKAGE with npm pack"
      mkdir -p "$cache"
      (cd "$work" && npm pack --silent "$NPM_PACKAGE" >/dev/null)
      mv "$work"/*.tgz "$tarball.tmp"
      got=$(sha512_integrity "$tarball.tmp")
      [ "$got" = "$NPM_INTEGRITY" ] || { rm -f "$tarball.tmp"; die "npm integrity mismatch: got $got, want $NPM_INTEGRITY"; }
      mv "$tarball.tmp" "$tarball"
    fi
    archive=$tarball ;;
esac
if [ -z "$bundle" ]; then
  [ -f "$archive" ] || die "no such archive: $archive"
  got=$(sha512_integrity "$archive")
  [ "$got" = "$NPM_INTEGRITY" ] || die "$archive: integrity mismatch: got $got, want $NPM_INTEGRITY"
  tar -xzf "$archive" -C "$work" "$NPM_BUNDLE"
  bundle=$work/$NPM_BUNDLE
fi

say "checking out $LLAMA_CPP_RELEASE ($LLAMA_CPP_COMMIT)"
git clone --quiet --no-checkout "$bundle" "$work/llama.cpp"
git -C "$work/llama.cpp" -c advice.detachedHead=false checkout --quiet "$LLAMA_CPP_COMMIT"
tree=$(git -C "$work/llama.cpp" rev-parse 'HEAD^{tree}')
[ "$tree" = "$LLAMA_CPP_TREE" ] || die "tree hash mismatch: got $tree, want $LLAMA_CPP_TREE"
rm -rf "$dest"
mkdir -p "$(dirname "$dest")"
mv "$work/llama.cpp" "$dest"
say "llama.cpp $LLAMA_CPP_RELEASE ready in ${dest#"$root"/}"

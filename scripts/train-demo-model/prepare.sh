#!/usr/bin/env bash
# Prepares the KJV demo model's training data, on this machine (the GPU machine has no
# network and no Go): installs Debian's King James Bible (bible-kjv-text, and bible-kjv
# whose `bible` program prints it), writes the text, and tokenizes it with this
# module's binding and llama.cpp's Llama SPM vocabulary.
#
#   bash scripts/train-demo-model/prepare.sh [OUT]      (default OUT: .device/kjv)
#
# OUT then holds kjv.txt (the text as printed), train.bin and val.bin (uint16 token
# ids), meta.json and pieces.json: what train.py reads. Run from the repository root.
set -euo pipefail
out=${1:-.device/kjv}
cd "$(dirname "$0")/../.."

if ! command -v bible >/dev/null || ! dpkg-query -W bible-kjv-text >/dev/null 2>&1; then
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo=sudo
	$sudo apt-get update
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends bible-kjv bible-kjv-text
fi
echo "text: $(dpkg-query -W -f='${Package} ${Version}' bible-kjv-text)"

# The tokenizer links llama.cpp: build it when missing (make's own rule).
make -s third_party/build/cpu/lib/libllama.a

mkdir -p "$out"
# Genesis 1:1 to Revelation 22:21, a verse per line (-l: no wrapping).
bible -l100000 'gen1:1-rev22:21' >"$out/kjv.txt"
go run ./scripts/train-demo-model/tokenize -in "$out/kjv.txt" -out "$out"
ls -l "$out"

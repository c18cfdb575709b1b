#!/usr/bin/env bash
# Speculative decoding, ours against upstream's from the same llama.cpp build, on one
# target/draft pair: examples/generate -md against llama-speculative, with plain decoding
# of each (examples/generate; llama-completion) as the anchor of its speed-up. Greedy,
# the same prompts and lengths, alternating, ROUNDS rounds; prints one line per run and
# the means.
#   BACKEND=cuda scripts/speculative-compare.sh TARGET.gguf DRAFT.gguf [TOKENS]
# Needs llama-speculative and llama-completion built beside the archives (make libs builds
# them; or LLAMA_TOOLS="llama-speculative llama-completion" bash scripts/build-llama.sh cuda).
# Env: ROUNDS (3), DRAFT_MAX (8: tokens per draft, both tools), P_MIN (0: both tools),
#      NGL (99; 0 on the CPU backend), THREADS (physical cores).
set -euo pipefail
cd "$(dirname "$0")/.."
target=$1 draft=$2 n=${3:-256}
backend=${BACKEND:-cpu} rounds=${ROUNDS:-3} dmax=${DRAFT_MAX:-8} pmin=${P_MIN:-0}
ngl=${NGL:-99}
[ "$backend" = cpu ] && ngl=0
tags=()
[ "$backend" = cpu ] || tags=(-tags "$backend")
bin=third_party/build/$backend/bin
for t in llama-speculative llama-completion; do
	[ -x "$bin/$t" ] || { echo "missing $bin/$t: see the header of $0" >&2; exit 1; }
done
gen=$(mktemp -d)/generate
go build "${tags[@]}" -o "$gen" ./examples/generate
threads=(); [ -n "${THREADS:-}" ] && threads=(-t "$THREADS")
prompts=("In the beginning God created" "And it came to pass, when" "The LORD is my shepherd;")

# Each runner prints "tokens/s accepted%" (accepted: - for plain decoding).
ours() { # [draft flags...]
	"$gen" -model "$target" -p "$p" -n "$n" -temp 0 -ngl "$ngl" "${threads[@]}" "$@" 2>&1 >/dev/null |
		awk '/^prompt:/ { for (i = 1; i <= NF; i++) if ($i == "t/s") tps = $(i-1) }
		     /^speculative:/ { gsub(/[(%)]/, "", $6); acc = $6 }
		     END { print tps, (acc == "" ? "-" : acc) }'
}
upstream_plain() {
	"$bin/llama-completion" -m "$target" -p "$p" -n "$n" --temp 0 -ngl "$ngl" "${threads[@]}" -no-cnv --no-display-prompt 2>&1 >/dev/null |
		awk '/ eval time/ && !/prompt eval/ { for (i = 1; i <= NF; i++) if ($i == "tokens" && $(i+1) == "per") tps = $(i-1) } END { print tps, "-" }'
}
upstream_spec() {
	"$bin/llama-speculative" -m "$target" -md "$draft" -p "$p" -n "$n" --temp 0 -ngl "$ngl" -ngld "$ngl" "${threads[@]}" \
		--spec-draft-n-max "$dmax" --spec-draft-p-min "$pmin" 2>&1 >/dev/null |
		awk '/decoded .* speed:/ { tps = $(NF-1) } /(^| )accept *= *[0-9.]+%/ { s = $0; sub(/.*accept *= */, "", s); sub(/%.*/, "", s); acc = s } END { print tps, acc }'
}

results=$(mktemp)
echo "round prompt tool mode tokens/s accepted%"
for r in $(seq "$rounds"); do
	for i in "${!prompts[@]}"; do
		p=${prompts[$i]}
		for run in "ours plain" "ours draft" "llama.cpp plain" "llama.cpp draft"; do
			case $run in
			"ours plain") out=$(ours) ;;
			"ours draft") out=$(ours -md "$draft" -spec-draft-n-max "$dmax" -spec-draft-p-min "$pmin") ;;
			"llama.cpp plain") out=$(upstream_plain) ;;
			"llama.cpp draft") out=$(upstream_spec) ;;
			esac
			echo "$r $i $run $out" | tee -a "$results"
		done
	done
done
echo
echo "means over $rounds rounds x ${#prompts[@]} prompts, $n tokens, draft max $dmax, p-min $pmin ($backend):"
awk '{ k = $3 " " $4; s[k] += $5; n[k]++; if ($6 != "-") a[k] += $6 }
     END { for (k in s) printf "  %-16s %8.1f tokens/s%s\n", k, s[k]/n[k], (a[k] ? sprintf("  accepted %.1f%%", a[k]/n[k]) : "") }' "$results" | sort
awk '{ k = $3 " " $4; s[k] += $5; n[k]++ }
     END { printf "  speed-up: ours %.2fx, llama.cpp %.2fx; ours draft / llama.cpp draft %.3f\n",
           (s["ours draft"]/n["ours draft"]) / (s["ours plain"]/n["ours plain"]),
           (s["llama.cpp draft"]/n["llama.cpp draft"]) / (s["llama.cpp plain"]/n["llama.cpp plain"]),
           (s["ours draft"]/n["ours draft"]) / (s["llama.cpp draft"]/n["llama.cpp draft"]) }' "$results"

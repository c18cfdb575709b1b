package main

import (
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseIntRange(t *testing.T) {
	for _, tc := range []struct {
		in       string
		negative bool
		want     []int
		err      bool
	}{
		{in: "512", want: []int{512}},
		{in: "128,512", want: []int{128, 512}},
		{in: "1-4", want: []int{1, 2, 3, 4}},
		{in: "16-64+16", want: []int{16, 32, 48, 64}},
		{in: "64-512*2", want: []int{64, 128, 256, 512}},
		{in: "64-500*2", want: []int{64, 128, 256}},
		{in: "1-3,8,10-20+5", want: []int{1, 2, 3, 8, 10, 15, 20}},
		{in: "5-1", want: nil}, // empty range, as upstream
		{in: "128,", want: []int{128}},
		{in: "", want: nil},
		{in: "-1", negative: true, want: []int{-1}},
		{in: "-1,0,99", negative: true, want: []int{-1, 0, 99}},
		{in: "-1", err: true},
		{in: "1-4|2", err: true},
		{in: "0-8*2", err: true}, // 0*2 does not advance
		{in: "1-8*1", err: true},
		{in: "1-8+0", err: true},
		{in: "abc", err: true},
		{in: "1,,2", err: true},
		{in: "1-", err: true},
	} {
		got, err := parseIntRange(tc.in, tc.negative)
		if tc.err {
			assert.Error(t, err, "%q", tc.in)
			continue
		}
		if assert.NoError(t, err, "%q", tc.in) {
			assert.Equal(t, tc.want, got, "%q", tc.in)
		}
	}
}

func TestParseArgs(t *testing.T) {
	p, err := parseArgs(nil)
	require.NoError(t, err)
	assert.Equal(t, []int{512}, p.nPrompt)
	assert.Equal(t, []int{128}, p.nGen)
	assert.Equal(t, []int{defaultThreads()}, p.nThreads)
	assert.Equal(t, 5, p.reps)
	assert.Equal(t, "md", p.output)
	assert.Equal(t, []string{""}, p.models)

	p, err = parseArgs(strings.Fields("-m a.gguf,b.gguf -m c.gguf -p 64 -p 128,256 -n 0 -pg 512,128 -pg 16,4 -t 1-2 -ngl -1,99 " +
		"-fa on,0,auto -mmp 0 -lm mmap -ctk q8_0 -ts 3/1,1;1 -mg 1 -mg 0 -sm none,row -r 3 -o json --n_depth 0,256 -app -app-device"))
	require.NoError(t, err)
	assert.Equal(t, []string{"a.gguf", "b.gguf", "c.gguf"}, p.models)
	assert.Equal(t, []int{64, 128, 256}, p.nPrompt)
	assert.Equal(t, []int{0}, p.nGen)
	assert.Equal(t, [][2]int{{512, 128}, {16, 4}}, p.nPG)
	assert.Equal(t, []int{1, 2}, p.nThreads)
	assert.Equal(t, []int{-1, 99}, p.nGPULayers)
	assert.Equal(t, []int{1, 0, -1}, p.flashAttn)
	assert.Equal(t, []string{"none", "mmap"}, p.loadMode)
	assert.Equal(t, []string{"q8_0"}, p.typeK)
	assert.Equal(t, []string{"f16"}, p.typeV)
	assert.Equal(t, [][]float32{{3, 1}, {1, 1}}, p.tensorSplit)
	assert.Equal(t, []int{0}, p.mainGPU, "the last -mg wins, as upstream")
	assert.Equal(t, []string{"none", "row"}, p.splitMode)
	assert.Equal(t, []int{0, 256}, p.nDepth, "--n_depth spelled with '_'")
	assert.Equal(t, 3, p.reps)
	assert.Equal(t, "json", p.output)
	assert.Equal(t, []string{"auto", "device"}, p.app)

	p, err = parseArgs([]string{"-p=32", "-C", "0x0", "--poll", "50", "-ot", "none"})
	require.NoError(t, err)
	assert.Equal(t, []int{32}, p.nPrompt)

	for _, bad := range [][]string{
		{"-p"}, {"-p", "x"}, {"-x"}, {"-pg", "1"}, {"-fa", "maybe"}, {"-ctk", "q9"}, {"-sm", "diagonal"},
		{"-o", "xml"}, {"-r", "0"}, {"-t", "0"}, {"-C", "0xff"}, {"--poll", "0"}, {"-ncmoe", "2"},
		{"-dio", "1"}, {"-lzm", "on"}, {"--no-host", "1"}, {"-dev", "none"}, {"--progress=1"},
	} {
		_, err := parseArgs(bad)
		assert.Error(t, err, "%q", bad)
	}
	_, err = parseArgs([]string{"-h"})
	assert.ErrorIs(t, err, errHelp)
}

func TestInstancesOrder(t *testing.T) {
	p, err := parseArgs(strings.Fields("-m x -p 16,32 -n 4 -pg 8,2 -t 1,2 -app"))
	require.NoError(t, err)
	var got []string
	for _, in := range instances(p) {
		got = append(got, in.name()+"/t"+string(rune('0'+in.nThreads)))
	}
	assert.Equal(t, []string{
		"pp16/t1", "pp32/t1", "tg4/t1", "tg4 (app)/t1", "pp8+tg2/t1",
		"pp16/t2", "pp32/t2", "tg4/t2", "tg4 (app)/t2", "pp8+tg2/t2",
	}, got)

	p, err = parseArgs(strings.Fields("-m x -p 0 -n 8 -d 0,512"))
	require.NoError(t, err)
	got = nil
	for _, in := range instances(p) {
		got = append(got, in.name())
	}
	assert.Equal(t, []string{"tg8", "tg8 @ d512"}, got)
}

// The statistics reproduce llama-bench's numbers for the same samples (taken from
// llama-bench's JSONL output).
func TestStatsMatchLlamaBench(t *testing.T) {
	for _, tc := range []struct {
		samples  []uint64
		nTokens  int
		avgNs    uint64
		stdevNs  uint64
		avgTS    string
		stdevTS  string
		samplesT string
	}{
		{[]uint64{251245150, 60175922}, 16, 155710536, 135106346, "164.784949", "142.980000", "63.6828, 265.887"},
		{[]uint64{12718769, 11708553}, 4, 12213661, 714330, "328.063223", "19.187170", "314.496, 341.631"},
		{[]uint64{1209904}, 16, 1209904, 0, "13224.189688", "0.000000", "13224.2"},
	} {
		r := &result{instance: &instance{nPrompt: tc.nTokens}, samplesNs: tc.samples}
		assert.Equal(t, tc.avgNs, avgNs(tc.samples))
		assert.Equal(t, tc.stdevNs, stdevNs(tc.samples))
		ts := r.ts()
		assert.Equal(t, tc.avgTS, formatF6(avgF(ts)))
		assert.Equal(t, tc.stdevTS, formatF6(stdevF(ts)))
		_, s := joinSamples(r)
		assert.Equal(t, tc.samplesT, s)
	}
	// Seconds-long samples overflow 64-bit sums of squares; the result stays right.
	big := []uint64{5_000_000_000, 7_000_000_000, 6_000_000_000, 5_000_000_000, 7_000_000_000}
	assert.Equal(t, uint64(6_000_000_000), avgNs(big))
	assert.InDelta(t, 1e9, float64(stdevNs(big)), 1)
	assert.Equal(t, "1.23457e+06", formatG6(1234567))
	assert.Equal(t, "0.000123", formatG6(0.000123))
}

func formatF6(v float64) string { return strconv.FormatFloat(v, 'f', 6, 64) }

package main

import (
	"math"
	"math/bits"
)

// The statistics are llama-bench's: times are integer nanoseconds with an integer
// mean; rates (tokens per second) are float64; both use the sample standard
// deviation in the form sqrt(Σx²/(n-1) - mean²·n/(n-1)), evaluated in the same
// order.

// avgNs is the integer mean of the samples (0 for none).
func avgNs(v []uint64) uint64 {
	if len(v) == 0 {
		return 0
	}
	var hi, lo uint64
	for _, x := range v {
		var c uint64
		lo, c = bits.Add64(lo, x, 0)
		hi += c
	}
	q, _ := bits.Div64(hi, lo, uint64(len(v)))
	return q
}

// stdevNs is the standard deviation of the samples in integer arithmetic, as
// llama-bench computes it, but in 128 bits where its 64-bit sums would overflow
// (samples of seconds).
func stdevNs(v []uint64) uint64 {
	if len(v) <= 1 {
		return 0
	}
	n := uint64(len(v))
	mean := avgNs(v)
	var sqHi, sqLo uint64
	for _, x := range v {
		h, l := bits.Mul64(x, x)
		var c uint64
		sqLo, c = bits.Add64(sqLo, l, 0)
		sqHi += h + c
	}
	a := div128(sqHi, sqLo, n-1)
	mh, ml := bits.Mul64(mean, mean)
	// mean²·n (at most 192 bits in theory; samples below ~10^19 ns keep it in 128)
	h1, l1 := bits.Mul64(ml, n)
	h2 := mh * n
	b := div128(h1+h2, l1, n-1)
	if a.less(b) {
		return 0
	}
	d := a.sub(b)
	return uint64(math.Sqrt(d.float()))
}

type u128 struct{ hi, lo uint64 }

func div128(hi, lo, d uint64) u128 {
	qh := hi / d
	ql, _ := bits.Div64(hi%d, lo, d)
	return u128{qh, ql}
}

func (a u128) less(b u128) bool { return a.hi < b.hi || a.hi == b.hi && a.lo < b.lo }

func (a u128) sub(b u128) u128 {
	lo, borrow := bits.Sub64(a.lo, b.lo, 0)
	return u128{a.hi - b.hi - borrow, lo}
}

func (a u128) float() float64 { return float64(a.hi)*0x1p64 + float64(a.lo) }

// tokensPerSecond converts each sample to tokens per second for nTokens tokens.
func tokensPerSecond(samples []uint64, nTokens int) []float64 {
	ts := make([]float64, len(samples))
	for i, ns := range samples {
		ts[i] = 1e9 * float64(nTokens) / float64(ns)
	}
	return ts
}

func avgF(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	var sum float64
	for _, x := range v {
		sum += x
	}
	return sum / float64(len(v))
}

func stdevF(v []float64) float64 {
	if len(v) <= 1 {
		return 0
	}
	n := float64(len(v))
	mean := avgF(v)
	var sq float64
	for _, x := range v {
		sq = sq + float64(x*x) // explicit conversion: no fused multiply-add
	}
	return math.Sqrt(float64(sq/(n-1)) - float64(float64(mean*mean)*n)/(n-1))
}

package gguf

import (
	"encoding/binary"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFloat32ToF16(t *testing.T) {
	negZero := float32(math.Copysign(0, -1))
	inf := float32(math.Inf(1))
	for _, tc := range []struct {
		in   float32
		want uint16
	}{
		{0, 0x0000},
		{negZero, 0x8000},
		{1, 0x3c00},
		{-2, 0xc000},
		{0.5, 0x3800},
		{65504, 0x7bff},               // largest half
		{65519.996, 0x7bff},           // just below the rounding boundary
		{65520, 0x7c00},               // halfway to 2^16: ties to even = Inf
		{1e9, 0x7c00},                 // overflow
		{-1e9, 0xfc00},                // negative overflow
		{inf, 0x7c00},                 //
		{-inf, 0xfc00},                //
		{0.1, 0x2e66},                 // 0.0999755859375
		{1 + 1.0/2048, 0x3c00},        // tie between 1 and 1+2^-10: even (1)
		{1 + 3.0/2048, 0x3c02},        // tie between 0x3c01 and 0x3c02: even
		{1 + 1.0/2048 + 1e-7, 0x3c01}, // just above the tie
		{6.103515625e-05, 0x0400},     // smallest normal 2^-14
		{5.960464477539063e-08, 1},    // smallest subnormal 2^-24
		{2.9802322387695312e-08, 0},   // 2^-25: tie between 0 and 2^-24, even = 0
		{2.98023259e-08, 1},           // just above 2^-25
		{8.940696716308594e-08, 2},    // 1.5 * 2^-24: tie between 1 and 2, even = 2
		{-5.960464477539063e-08, 0x8001},
		{1e-10, 0}, // underflow
		{-1e-10, 0x8000},
	} {
		assert.Equal(t, tc.want, Float32ToF16(tc.in), "%g", tc.in)
	}
	nan := Float32ToF16(float32(math.NaN()))
	assert.Equal(t, uint16(0x7c00), nan&0x7c00, "NaN keeps an all-ones exponent")
	assert.NotZero(t, nan&0x3ff, "NaN keeps a non-zero mantissa")
	assert.True(t, math.IsNaN(float64(F16ToFloat32(nan))))
	// A signalling NaN whose payload lives only in low bits stays NaN.
	assert.True(t, math.IsNaN(float64(F16ToFloat32(Float32ToF16(math.Float32frombits(0x7f800001))))))
}

// TestF16Exhaustive checks every half: conversion back is exact, and the
// float32 midpoint between neighbours rounds to the even one, while values
// just beside it round to the nearer one.
func TestF16Exhaustive(t *testing.T) {
	for h := range uint32(0x7c00) { // positive finite halves
		f := F16ToFloat32(uint16(h))
		require.Equal(t, uint16(h), Float32ToF16(f), "h=%#04x", h)
		require.Equal(t, uint16(h|0x8000), Float32ToF16(-f), "h=-%#04x", h)
		next := F16ToFloat32(uint16(h + 1)) // 0x7c00 is +Inf
		if h+1 == 0x7c00 {
			next = 65536 // the rounding boundary continues the pattern
		}
		mid := (f + next) / 2 // exact: halves have 11 significant bits
		even := uint16(h)
		if h&1 == 1 {
			even = uint16(h + 1)
		}
		require.Equal(t, even, Float32ToF16(mid), "midpoint above h=%#04x", h)
		require.Equal(t, uint16(h), Float32ToF16(math.Nextafter32(mid, 0)), "below midpoint of h=%#04x", h)
		require.Equal(t, uint16(h+1), Float32ToF16(math.Nextafter32(mid, 1e9)), "above midpoint of h=%#04x", h)
	}
}

func TestBF16(t *testing.T) {
	for _, tc := range []struct {
		bits uint32
		want uint16
	}{
		{math.Float32bits(1), 0x3f80},
		{math.Float32bits(-2), 0xc000},
		{0x80000000, 0x8000}, // -0
		{0x3f808000, 0x3f80}, // 1 + 2^-8: tie, even stays
		{0x3f818000, 0x3f82}, // tie, odd rounds up
		{0x3f808001, 0x3f81}, // just above the tie
		{0x7f7fffff, 0x7f80}, // max float32 rounds to Inf
		{0x7f800000, 0x7f80}, // +Inf
		{0xff800000, 0xff80}, // -Inf
		{0x7f800001, 0x7fc0}, // signalling NaN becomes quiet
		{0xffc00000, 0xffc0}, // negative quiet NaN
		{0x00000001, 0x0000}, // float32 subnormal rounds to zero
		{0x00018000, 0x0002}, // subnormal tie, odd rounds up
	} {
		assert.Equal(t, tc.want, Float32ToBF16(math.Float32frombits(tc.bits)), "%#08x", tc.bits)
	}
	for h := range uint32(0x10000) {
		f := BF16ToFloat32(uint16(h))
		if f != f {
			continue // NaN payloads are quietened
		}
		require.Equal(t, uint16(h), Float32ToBF16(f))
	}
}

func TestQ8_0(t *testing.T) {
	le := binary.LittleEndian

	// Block 1: amax 127, so d = 1 and q = round(x) with halves away from 0.
	// Block 2: values -15..16, amax 16: d = 16/127 stored as fp16 0x3008
	// (0.1259765625); q = round(x*127/16).
	// Block 3: all zero: d = 0, q = 0.
	src := make([]float32, 96)
	src[0], src[1], src[2], src[3], src[4], src[5], src[6] = 127, 2.5, -2.5, 0.5, -0.5, 1.4999, -126.6
	for i := range 32 {
		src[32+i] = float32(i - 15)
	}
	out, err := Encode(nil, TypeQ8_0, src)
	require.NoError(t, err)
	require.Len(t, out, 3*34)

	assert.Equal(t, uint16(0x3c00), le.Uint16(out[0:]))
	assert.Equal(t, []int8{127, 3, -3, 1, -1, 1, -127, 0}, asInt8(out[2:10]))

	assert.Equal(t, uint16(0x3008), le.Uint16(out[34:]))
	q := asInt8(out[36:68])
	// x=-15: -119.0625 -> -119; x=1: 7.9375 -> 8; x=2: 15.875 -> 16; x=16: 127.
	assert.Equal(t, int8(-119), q[0])
	assert.Equal(t, int8(0), q[15])
	assert.Equal(t, int8(8), q[16])
	assert.Equal(t, int8(16), q[17])
	assert.Equal(t, int8(127), q[31])

	assert.Equal(t, make([]byte, 34), out[68:])

	// Decoding gives d*q.
	back, err := Decode(nil, TypeQ8_0, out)
	require.NoError(t, err)
	assert.Equal(t, float32(2.5+0.5), back[1])
	assert.InDelta(t, 1.0, back[33+15], 0.01)
	assert.Equal(t, F16ToFloat32(0x3008)*8, back[32+16])

	_, err = Encode(nil, TypeQ8_0, make([]float32, 33))
	assert.ErrorContains(t, err, "multiple of 32")
	bad := make([]float32, 32)
	bad[9] = float32(math.Inf(1))
	prefix := []byte{1, 2}
	got, err := Encode(prefix, TypeQ8_0, bad)
	assert.ErrorContains(t, err, "non-finite")
	assert.Equal(t, prefix, got, "dst is unchanged on error")
	bad[9] = float32(math.NaN())
	_, err = Encode(nil, TypeQ8_0, bad)
	assert.ErrorContains(t, err, "non-finite")
}

func asInt8(b []byte) []int8 {
	out := make([]int8, len(b))
	for i, x := range b {
		out[i] = int8(x)
	}
	return out
}

func TestEncodeDecode(t *testing.T) {
	src := []float32{0, 1, -1.5, 3.140625, 1e-3, -65504}
	for _, typ := range []TensorType{TypeF32, TypeF16, TypeBF16} {
		prefix := []byte{9}
		out, err := Encode(prefix, typ, src)
		require.NoError(t, err)
		assert.Equal(t, byte(9), out[0], "Encode appends")
		assert.Len(t, out, 1+len(src)*int(typ.BlockBytes()))
		back, err := Decode(nil, typ, out[1:])
		require.NoError(t, err)
		require.Len(t, back, len(src))
		for i, x := range src {
			assert.InEpsilon(t, x+1e-9, back[i]+1e-9, 0.01, "%s %g", typ, x)
		}
	}
	f32, _ := Encode(nil, TypeF32, []float32{1})
	assert.Equal(t, []byte{0, 0, 0x80, 0x3f}, f32, "little endian")

	_, err := Encode(nil, TypeQ4_K, src)
	assert.ErrorContains(t, err, "encoding to q4_K is not supported")
	_, err = Decode(nil, TypeF16, []byte{1})
	assert.ErrorContains(t, err, "not a whole number of f16 blocks")
	_, err = Decode(nil, TypeQ4_0, make([]byte, 18))
	assert.ErrorContains(t, err, "decoding q4_0 is not supported")
}

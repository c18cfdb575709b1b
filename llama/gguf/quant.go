package gguf

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
)

// qk8_0 is the Q8_0 block size: one fp16 scale followed by 32 int8.
const qk8_0 = 32

// Float32ToF16 converts f to IEEE 754 half precision, rounding to nearest
// even. Values too large become ±Inf, NaN stays NaN (quiet), and the sign
// of zero is kept.
func Float32ToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23) & 0xff
	mant := b & 0x7fffff
	if exp == 0xff {
		if mant != 0 {
			return sign | 0x7e00
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15 // rebias
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e <= 0 {
		// Subnormal half (or zero): shift the mantissa, implicit bit
		// included, right by 14-e and round the dropped bits.
		if e < -10 {
			return sign // below half the smallest subnormal
		}
		mant |= 0x800000
		shift := uint32(14 - e)
		h := mant >> shift
		rem := mant & (1<<shift - 1)
		halfway := uint32(1) << (shift - 1)
		if rem > halfway || rem == halfway && h&1 == 1 {
			h++
		}
		return sign | uint16(h)
	}
	// Round to nearest even without branches (random mantissas make
	// branches mispredict): add just under half an ulp plus the ulp's low
	// bit, then truncate. A carry correctly bumps the exponent, up to Inf.
	x := uint32(e)<<23 | mant
	return sign | uint16((x+0xfff+(x>>13)&1)>>13)
}

// F16ToFloat32 converts an IEEE 754 half to float32 (exactly).
func F16ToFloat32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h & 0x3ff)
	switch exp {
	case 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case 0:
		// Zero or subnormal: mant * 2^-24, exact in float32.
		f := float32(mant) * (1.0 / (1 << 24))
		if sign != 0 {
			f = -f
		}
		return f
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
}

// Float32ToBF16 converts f to bfloat16 like ggml: round to nearest even,
// NaN forced to a quiet NaN.
func Float32ToBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 {
		return uint16(b>>16) | 0x40
	}
	return uint16((b + 0x7fff + (b>>16)&1) >> 16)
}

// BF16ToFloat32 converts a bfloat16 to float32 (exactly).
func BF16ToFloat32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// Encode appends src encoded as tensor type t to dst. Supported types are
// F32, F16, BF16 and Q8_0; Q8_0 needs len(src) to be a multiple of 32 and
// finite values.
func Encode(dst []byte, t TensorType, src []float32) ([]byte, error) {
	switch t {
	case TypeF32:
		out := grow(&dst, 4*len(src))
		for i, x := range src {
			binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(x))
		}
	case TypeF16:
		out := grow(&dst, 2*len(src))
		for i, x := range src {
			binary.LittleEndian.PutUint16(out[2*i:], Float32ToF16(x))
		}
	case TypeBF16:
		out := grow(&dst, 2*len(src))
		for i, x := range src {
			binary.LittleEndian.PutUint16(out[2*i:], Float32ToBF16(x))
		}
	case TypeQ8_0:
		return encodeQ8_0(dst, src)
	default:
		return dst, fmt.Errorf("gguf: encoding to %s is not supported", t)
	}
	return dst, nil
}

// encodeQ8_0 follows ggml's quantize_row_q8_0_ref so files match
// llama-quantize byte for byte: d = max|x|/127 stored as fp16,
// q = round(x * (1/d)) with halves away from zero, using the float32 d
// rather than its fp16 rounding.
func encodeQ8_0(dst []byte, src []float32) ([]byte, error) {
	if len(src)%qk8_0 != 0 {
		return dst, fmt.Errorf("gguf: q8_0 needs a multiple of %d values, got %d", qk8_0, len(src))
	}
	n0 := len(dst)
	out := grow(&dst, len(src)/qk8_0*34)
	for blk := range slices.Chunk(src, qk8_0) {
		// max|x| on the bit patterns: for non-negative floats the order of
		// the bits is the order of the values, and NaN/Inf are the largest.
		var abits uint32
		for _, x := range blk {
			abits = max(abits, math.Float32bits(x)&0x7fffffff)
		}
		if abits >= 0x7f800000 {
			return dst[:n0], fmt.Errorf("gguf: q8_0 cannot encode non-finite values")
		}
		d := math.Float32frombits(abits) / 127
		var id float32
		if d != 0 {
			id = 1 / d
		}
		binary.LittleEndian.PutUint16(out, Float32ToF16(d))
		for j, x := range blk {
			// roundf: halves away from zero. In float64, v±0.5 is exact for
			// |v| <= 128, so truncating it rounds exactly like roundf.
			v := float64(x * id)
			out[2+j] = byte(int8(v + math.Copysign(0.5, v)))
		}
		out = out[34:]
	}
	return dst, nil
}

// grow extends *dst by n bytes and returns the new tail.
func grow(dst *[]byte, n int) []byte {
	d := slices.Grow(*dst, n)
	*dst = d[:len(d)+n]
	return (*dst)[len(d):]
}

// Decode appends the values of data, encoded as tensor type t, to dst.
// Supported types are F32, F16, BF16 and Q8_0.
func Decode(dst []float32, t TensorType, data []byte) ([]float32, error) {
	size := t.BlockBytes()
	if size == 0 || int64(len(data))%size != 0 {
		return dst, fmt.Errorf("gguf: %d bytes are not a whole number of %s blocks", len(data), t)
	}
	switch t {
	case TypeF32:
		for b := range slices.Chunk(data, 4) {
			dst = append(dst, math.Float32frombits(binary.LittleEndian.Uint32(b)))
		}
	case TypeF16:
		for b := range slices.Chunk(data, 2) {
			dst = append(dst, F16ToFloat32(binary.LittleEndian.Uint16(b)))
		}
	case TypeBF16:
		for b := range slices.Chunk(data, 2) {
			dst = append(dst, BF16ToFloat32(binary.LittleEndian.Uint16(b)))
		}
	case TypeQ8_0:
		for b := range slices.Chunk(data, 34) {
			d := F16ToFloat32(binary.LittleEndian.Uint16(b))
			for _, q := range b[2:] {
				dst = append(dst, d*float32(int8(q)))
			}
		}
	default:
		return dst, fmt.Errorf("gguf: decoding %s is not supported", t)
	}
	return dst, nil
}

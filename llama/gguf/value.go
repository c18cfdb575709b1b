package gguf

import "fmt"

// ValueType is the type of a metadata value (enum gguf_type).
type ValueType uint32

// Metadata value types, numbered as in the file format.
const (
	ValueUint8   ValueType = 0
	ValueInt8    ValueType = 1
	ValueUint16  ValueType = 2
	ValueInt16   ValueType = 3
	ValueUint32  ValueType = 4
	ValueInt32   ValueType = 5
	ValueFloat32 ValueType = 6
	ValueBool    ValueType = 7
	ValueString  ValueType = 8
	ValueArray   ValueType = 9
	ValueUint64  ValueType = 10
	ValueInt64   ValueType = 11
	ValueFloat64 ValueType = 12
)

var valueTypeNames = [...]string{
	ValueUint8:   "uint8",
	ValueInt8:    "int8",
	ValueUint16:  "uint16",
	ValueInt16:   "int16",
	ValueUint32:  "uint32",
	ValueInt32:   "int32",
	ValueFloat32: "float32",
	ValueBool:    "bool",
	ValueString:  "string",
	ValueArray:   "array",
	ValueUint64:  "uint64",
	ValueInt64:   "int64",
	ValueFloat64: "float64",
}

func (t ValueType) valid() bool { return t <= ValueFloat64 }

// String returns the type's name ("uint32", "string", "array").
func (t ValueType) String() string {
	if t.valid() {
		return valueTypeNames[t]
	}
	return fmt.Sprintf("valuetype(%d)", uint32(t))
}

// fixedSize is the encoded size of a scalar of type t, or 0 for strings
// and arrays, whose size depends on their contents.
func (t ValueType) fixedSize() int64 {
	switch t {
	case ValueUint8, ValueInt8, ValueBool:
		return 1
	case ValueUint16, ValueInt16:
		return 2
	case ValueUint32, ValueInt32, ValueFloat32:
		return 4
	case ValueUint64, ValueInt64, ValueFloat64:
		return 8
	}
	return 0
}

// minSize is the smallest possible encoding of a value of type t; the
// reader uses it to reject counts that cannot fit in the rest of the file.
func (t ValueType) minSize() int64 {
	switch t {
	case ValueString:
		return 8 // length
	case ValueArray:
		return 12 // element type + count
	}
	return t.fixedSize()
}

// Value is a metadata value: a scalar, a string, or an array whose
// elements all have one type (arrays of arrays are allowed).
//
// The zero Value is invalid. Build values with the constructors ([Uint32],
// [String], [Array], ...); read them with [Value.Any] or the typed getters
// of [File].
type Value struct {
	typ ValueType
	// x holds the Go form: uint8 ... float64, bool, string for scalars;
	// []uint8 ... []float64, []bool, []string for arrays of scalars and
	// []Value for arrays of arrays.
	x any
}

// KV is one metadata entry. Files keep their entries in order.
type KV struct {
	Key   string
	Value Value
}

// Uint8 returns a uint8 value.
func Uint8(v uint8) Value { return Value{ValueUint8, v} }

// Int8 returns a int8 value.
func Int8(v int8) Value { return Value{ValueInt8, v} }

// Uint16 returns a uint16 value.
func Uint16(v uint16) Value { return Value{ValueUint16, v} }

// Int16 returns a int16 value.
func Int16(v int16) Value { return Value{ValueInt16, v} }

// Uint32 returns a uint32 value.
func Uint32(v uint32) Value { return Value{ValueUint32, v} }

// Int32 returns a int32 value.
func Int32(v int32) Value { return Value{ValueInt32, v} }

// Float32 returns a float32 value.
func Float32(v float32) Value { return Value{ValueFloat32, v} }

// Bool returns a bool value.
func Bool(v bool) Value { return Value{ValueBool, v} }

// String returns a string value.
func String(v string) Value { return Value{ValueString, v} }

// Uint64 returns a uint64 value.
func Uint64(v uint64) Value { return Value{ValueUint64, v} }

// Int64 returns a int64 value.
func Int64(v int64) Value { return Value{ValueInt64, v} }

// Float64 returns a float64 value.
func Float64(v float64) Value { return Value{ValueFloat64, v} }

// Elem is the set of Go types that can be array elements. []Value makes an
// array of arrays; every element must then itself be an array.
type Elem interface {
	uint8 | int8 | uint16 | int16 | uint32 | int32 | float32 | bool | string |
		uint64 | int64 | float64 | Value
}

// Array returns an array value. It keeps elems without copying.
func Array[T Elem](elems []T) Value {
	if elems == nil {
		elems = []T{} // keep the element type of an empty array
	}
	return Value{ValueArray, elems}
}

// Type returns the value's type.
func (v Value) Type() ValueType { return v.typ }

// Elem returns the element type of an array (ValueArray for arrays of
// arrays). It returns false if v is not an array.
func (v Value) Elem() (ValueType, bool) {
	if v.typ != ValueArray {
		return 0, false
	}
	switch v.x.(type) {
	case []uint8:
		return ValueUint8, true
	case []int8:
		return ValueInt8, true
	case []uint16:
		return ValueUint16, true
	case []int16:
		return ValueInt16, true
	case []uint32:
		return ValueUint32, true
	case []int32:
		return ValueInt32, true
	case []float32:
		return ValueFloat32, true
	case []bool:
		return ValueBool, true
	case []string:
		return ValueString, true
	case []uint64:
		return ValueUint64, true
	case []int64:
		return ValueInt64, true
	case []float64:
		return ValueFloat64, true
	case []Value:
		return ValueArray, true
	}
	return 0, false
}

// Len returns the number of elements of an array, and 0 for scalars.
func (v Value) Len() int {
	switch a := v.x.(type) {
	case []uint8:
		return len(a)
	case []int8:
		return len(a)
	case []uint16:
		return len(a)
	case []int16:
		return len(a)
	case []uint32:
		return len(a)
	case []int32:
		return len(a)
	case []float32:
		return len(a)
	case []bool:
		return len(a)
	case []string:
		return len(a)
	case []uint64:
		return len(a)
	case []int64:
		return len(a)
	case []float64:
		return len(a)
	case []Value:
		return len(a)
	}
	return 0
}

// Any returns the value in its Go form: uint8 ... float64, bool or string
// for scalars, a slice of those for arrays, []Value for arrays of arrays.
// Slices are shared with v, not copied.
func (v Value) Any() any { return v.x }

// check reports why v cannot be encoded, descending at most depth levels of
// nested arrays.
func (v Value) check(depth int) error {
	if v.typ == ValueArray {
		elem, ok := v.Elem()
		if !ok {
			return fmt.Errorf("array holds unsupported Go type %T", v.x)
		}
		if elem != ValueArray {
			return nil
		}
		if depth >= maxArrayDepth {
			return fmt.Errorf("arrays nested deeper than %d levels", maxArrayDepth)
		}
		for i, e := range v.x.([]Value) {
			if e.typ != ValueArray {
				return fmt.Errorf("element %d of an array of arrays has type %s", i, e.typ)
			}
			if err := e.check(depth + 1); err != nil {
				return err
			}
		}
		return nil
	}
	if !v.typ.valid() {
		return fmt.Errorf("invalid value type %d", uint32(v.typ))
	}
	ok := false
	switch v.x.(type) {
	case uint8:
		ok = v.typ == ValueUint8
	case int8:
		ok = v.typ == ValueInt8
	case uint16:
		ok = v.typ == ValueUint16
	case int16:
		ok = v.typ == ValueInt16
	case uint32:
		ok = v.typ == ValueUint32
	case int32:
		ok = v.typ == ValueInt32
	case float32:
		ok = v.typ == ValueFloat32
	case bool:
		ok = v.typ == ValueBool
	case string:
		ok = v.typ == ValueString
	case uint64:
		ok = v.typ == ValueUint64
	case int64:
		ok = v.typ == ValueInt64
	case float64:
		ok = v.typ == ValueFloat64
	}
	if !ok {
		return fmt.Errorf("value of type %s holds Go type %T (zero Value?)", v.typ, v.x)
	}
	return nil
}

// maxArrayDepth bounds arrays of arrays (an array of scalars is depth 1).
// llama.cpp reads no nested arrays at all; the bound keeps hostile files
// from recursing deeply.
const maxArrayDepth = 8

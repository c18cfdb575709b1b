package cli

import (
	"strconv"
)

type stringValue string

func (v *stringValue) Set(s string) error { *v = stringValue(s); return nil }
func (v *stringValue) String() string     { return string(*v) }

type intValue int

func (v *intValue) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil {
		return errNumber
	}
	*v = intValue(n)
	return nil
}
func (v *intValue) String() string { return strconv.Itoa(int(*v)) }

type boolValue bool

func (v *boolValue) Set(s string) error {
	b, err := strconv.ParseBool(s)
	if err != nil {
		return errBool
	}
	*v = boolValue(b)
	return nil
}
func (v *boolValue) String() string   { return strconv.FormatBool(bool(*v)) }
func (v *boolValue) IsBoolFlag() bool { return true }

type float32Value float32

func (v *float32Value) Set(s string) error {
	f, err := strconv.ParseFloat(s, 32)
	if err != nil {
		return errNumber
	}
	*v = float32Value(f)
	return nil
}
func (v *float32Value) String() string { return strconv.FormatFloat(float64(*v), 'g', -1, 32) }

type funcValue struct {
	fn  func(string) error
	def string
}

func (v *funcValue) Set(s string) error { return v.fn(s) }
func (v *funcValue) String() string {
	if v == nil {
		return ""
	}
	return v.def
}

type parseError string

func (e parseError) Error() string { return string(e) }

const (
	errNumber parseError = "not a number"
	errBool   parseError = "want true or false"
)

package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/llamago/llamago/llama/gguf"
)

// Abbreviation limits for text output and summarised JSON.
const (
	headElems = 6   // array elements shown
	maxString = 120 // string bytes shown
)

func inspectCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("inspect", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print a JSON object instead of text")
	full := fs.Bool("full", false, "print arrays and long strings in full")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: gguf inspect [-json] [-full] FILE")
		fs.PrintDefaults()
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return fmt.Errorf("inspect takes one FILE, got %d arguments", len(pos))
	}
	f, err := gguf.Open(pos[0])
	if err != nil {
		return runtimeErr(err)
	}
	defer f.Close()
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		return enc.Encode(jsonReport(pos[0], f, *full))
	}
	return textReport(stdout, pos[0], f, *full)
}

type typeStat struct {
	Type    string `json:"type"`
	Tensors int    `json:"tensors"`
	Bytes   int64  `json:"bytes"`
}

type summary struct {
	Params   int64      `json:"parameters"`
	Bytes    int64      `json:"tensor_bytes"`
	Arch     string     `json:"architecture,omitempty"`
	FileType string     `json:"file_type,omitempty"`
	ByType   []typeStat `json:"by_type"`
}

func summarize(f *gguf.File) summary {
	var s summary
	stats := map[gguf.TensorType]*typeStat{}
	for _, t := range f.Tensors {
		s.Params += t.Elements()
		s.Bytes += t.Size()
		st := stats[t.Type]
		if st == nil {
			st = &typeStat{Type: t.Type.String()}
			stats[t.Type] = st
		}
		st.Tensors++
		st.Bytes += t.Size()
	}
	for _, st := range stats {
		s.ByType = append(s.ByType, *st)
	}
	sort.Slice(s.ByType, func(i, j int) bool { return s.ByType[i].Bytes > s.ByType[j].Bytes })
	s.Arch, _ = f.String("general.architecture")
	if ft, err := f.FileType(); err == nil {
		s.FileType = ft.String()
	}
	return s
}

func textReport(w io.Writer, path string, f *gguf.File, full bool) error {
	fmt.Fprintf(w, "file:        %s\n", path)
	fmt.Fprintf(w, "size:        %s (%d bytes)\n", human(f.Size), f.Size)
	fmt.Fprintf(w, "version:     %d\n", f.Version)
	fmt.Fprintf(w, "alignment:   %d\n", f.Alignment)
	fmt.Fprintf(w, "data offset: %d\n", f.DataOffset)
	fmt.Fprintf(w, "metadata:    %d keys\n", len(f.Metadata))
	fmt.Fprintf(w, "tensors:     %d\n", len(f.Tensors))

	fmt.Fprintf(w, "\nmetadata:\n")
	tw := tabwriter.NewWriter(w, 0, 8, 1, ' ', 0)
	for _, kv := range f.Metadata {
		val := formatValue(kv.Value, full)
		if ft, ok := kv.Value.Any().(uint32); ok && kv.Key == "general.file_type" {
			val += " (" + gguf.FileType(ft).String() + ")"
		}
		fmt.Fprintf(tw, "  %s\t%s\t= %s\n", kv.Key, typeName(kv.Value), val)
	}
	tw.Flush()

	if len(f.Tensors) > 0 {
		fmt.Fprintf(w, "\ntensors (shape in ggml order, innermost first; offsets are absolute):\n")
		tw = tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
		fmt.Fprintf(tw, "  #\tname\ttype\tshape\telements\tsize\toffset\n")
		for i, t := range f.Tensors {
			fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%d\t%s\t%d\n", i, t.Name, t.Type, shapeString(t.Shape),
				t.Elements(), human(t.Size()), f.DataOffset+t.Offset)
		}
		tw.Flush()
	}

	s := summarize(f)
	fmt.Fprintf(w, "\nsummary:\n")
	if s.Arch != "" {
		fmt.Fprintf(w, "  architecture: %s\n", s.Arch)
	}
	if s.FileType != "" {
		fmt.Fprintf(w, "  file type:    %s\n", s.FileType)
	}
	fmt.Fprintf(w, "  parameters:   %s (%d)\n", humanCount(s.Params), s.Params)
	fmt.Fprintf(w, "  tensor data:  %s\n", human(s.Bytes))
	for _, st := range s.ByType {
		fmt.Fprintf(w, "    %-8s %5d tensors  %s\n", st.Type, st.Tensors, human(st.Bytes))
	}
	return nil
}

func typeName(v gguf.Value) string {
	if e, ok := v.Elem(); ok {
		return "[" + e.String() + "]"
	}
	return v.Type().String()
}

func shapeString(shape []int64) string {
	parts := make([]string, len(shape))
	for i, d := range shape {
		parts[i] = strconv.FormatInt(d, 10)
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// formatValue renders v on one line; unless full, long strings and arrays
// are abbreviated.
func formatValue(v gguf.Value, full bool) string {
	if _, ok := v.Elem(); !ok {
		return formatScalar(v.Any(), full)
	}
	limit := v.Len()
	if !full {
		limit = min(limit, headElems)
	}
	parts := make([]string, 0, limit)
	if nested, ok := v.Any().([]gguf.Value); ok {
		for _, e := range nested[:limit] {
			parts = append(parts, formatValue(e, full))
		}
	} else {
		for _, x := range arrayElems(v, limit) {
			parts = append(parts, formatScalar(x, full))
		}
	}
	e, _ := v.Elem()
	s := fmt.Sprintf("[array of %d %s", v.Len(), e)
	if len(parts) > 0 {
		s += ": " + strings.Join(parts, ", ")
	}
	if limit < v.Len() {
		s += ", ..."
	}
	return s + "]"
}

func formatScalar(x any, full bool) string {
	switch x := x.(type) {
	case string:
		if !full && len(x) > maxString {
			return strconv.Quote(truncateUTF8(x, maxString)) + fmt.Sprintf("... (%d bytes)", len(x))
		}
		return strconv.Quote(x)
	case float32:
		return strconv.FormatFloat(float64(x), 'g', -1, 32)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	}
	return fmt.Sprint(x)
}

// arrayElems returns the first n elements of an array of scalars.
func arrayElems(v gguf.Value, n int) []any {
	switch a := v.Any().(type) {
	case []uint8:
		return head(a, n)
	case []int8:
		return head(a, n)
	case []uint16:
		return head(a, n)
	case []int16:
		return head(a, n)
	case []uint32:
		return head(a, n)
	case []int32:
		return head(a, n)
	case []float32:
		return head(a, n)
	case []bool:
		return head(a, n)
	case []string:
		return head(a, n)
	case []uint64:
		return head(a, n)
	case []int64:
		return head(a, n)
	case []float64:
		return head(a, n)
	}
	return nil
}

func head[T any](a []T, n int) []any {
	out := make([]any, 0, min(n, len(a)))
	for _, x := range a[:min(n, len(a))] {
		out = append(out, x)
	}
	return out
}

func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n-- // do not cut a rune in half
	}
	return s[:n]
}

func human(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.2f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func humanCount(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.2f B", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.2f M", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.2f K", float64(n)/1e3)
	}
	return strconv.FormatInt(n, 10)
}

// JSON output.

type jsonKV struct {
	Key   string `json:"key"`
	Type  string `json:"type"`
	Elem  string `json:"elem_type,omitempty"`
	Len   *int   `json:"len,omitempty"`
	Value any    `json:"value,omitempty"`
	// Head holds the first elements of an array summarised without -full.
	Head []any `json:"head,omitempty"`
}

type jsonTensor struct {
	Name     string  `json:"name"`
	Type     string  `json:"type"`
	Shape    []int64 `json:"shape"`
	Elements int64   `json:"elements"`
	Size     int64   `json:"size"`
	Offset   int64   `json:"offset"` // relative to data_offset
}

type jsonFile struct {
	Path       string       `json:"path"`
	Size       int64        `json:"size"`
	Version    uint32       `json:"version"`
	Alignment  int64        `json:"alignment"`
	DataOffset int64        `json:"data_offset"`
	KVCount    int          `json:"kv_count"`
	Tensors    int          `json:"tensor_count"`
	Metadata   []jsonKV     `json:"metadata"`
	TensorList []jsonTensor `json:"tensors"`
	Summary    summary      `json:"summary"`
}

func jsonReport(path string, f *gguf.File, full bool) jsonFile {
	out := jsonFile{
		Path: path, Size: f.Size, Version: f.Version, Alignment: f.Alignment, DataOffset: f.DataOffset,
		KVCount: len(f.Metadata), Tensors: len(f.Tensors),
		Metadata: []jsonKV{}, TensorList: []jsonTensor{}, Summary: summarize(f),
	}
	for _, kv := range f.Metadata {
		out.Metadata = append(out.Metadata, jsonEntry(kv.Key, kv.Value, full))
	}
	for _, t := range f.Tensors {
		out.TensorList = append(out.TensorList, jsonTensor{t.Name, t.Type.String(), t.Shape, t.Elements(), t.Size(), t.Offset})
	}
	return out
}

func jsonEntry(key string, v gguf.Value, full bool) jsonKV {
	e := jsonKV{Key: key, Type: v.Type().String()}
	if _, ok := v.Elem(); !ok {
		e.Value = jsonValue(v, full)
		return e
	}
	et, _ := v.Elem()
	n := v.Len()
	e.Elem, e.Len = et.String(), &n
	vals := jsonValue(v, full).([]any)
	if full {
		e.Value = vals
	} else {
		e.Head = vals
	}
	return e
}

// jsonValue converts v to a JSON-encodable form: non-finite floats become
// strings, and unless full, arrays keep only their first elements.
func jsonValue(v gguf.Value, full bool) any {
	if _, ok := v.Elem(); !ok {
		return jsonScalar(v.Any())
	}
	limit := v.Len()
	if !full {
		limit = min(limit, headElems)
	}
	out := make([]any, 0, limit)
	if nested, ok := v.Any().([]gguf.Value); ok {
		for _, e := range nested[:limit] {
			out = append(out, jsonValue(e, full))
		}
		return out
	}
	for _, x := range arrayElems(v, limit) {
		out = append(out, jsonScalar(x))
	}
	return out
}

func jsonScalar(x any) any {
	var f float64
	bits := 64
	switch x := x.(type) {
	case float32:
		f, bits = float64(x), 32
	case float64:
		f = x
	default:
		return x
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return strconv.FormatFloat(f, 'g', -1, bits)
	}
	return json.Number(strconv.FormatFloat(f, 'g', -1, bits))
}

package main

import (
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/llamago/llamago/llama"
)

// params holds the command line: lists of values per test parameter (their
// combinations make the test matrix, as in llama-bench) and the run options.
type params struct {
	models      []string
	nPrompt     []int
	nGen        []int
	nPG         [][2]int
	nDepth      []int
	nBatch      []int
	nUBatch     []int
	typeK       []string
	typeV       []string
	nThreads    []int
	cpuMask     []string
	cpuStrict   []bool
	poll        []int
	nGPULayers  []int
	nCPUMoE     []int
	splitMode   []string
	loadMode    []string
	lazyMode    []string
	mainGPU     []int
	noKVOffload []bool
	flashAttn   []int // llama_flash_attn_type: -1 auto, 0 off, 1 on
	devices     [][]string
	tensorSplit [][]float32
	overrides   []string
	embeddings  []bool
	noOpOffload []bool
	noHost      []bool
	fitTarget   []int
	fitMinCtx   []int

	reps      int
	delay     int
	verbose   bool
	progress  bool
	noWarmup  bool
	output    string
	outputErr string

	// app adds, after every generation test, the same generation as applications
	// run it: GenerateText with the default sampler chain, sampling where GenerateText
	// places it ("auto") and/or attached to the device by hand ("device").
	app []string
	// appBreakdown prints, after each app test, where the time of a token went (stderr).
	appBreakdown bool
}

// The defaults are llama-bench's, except the model: a synthetic Qwen2-0.5B-shape Q8_0
// model when none is given.
func defaults() params {
	return params{
		nPrompt:     []int{512},
		nGen:        []int{128},
		nDepth:      []int{0},
		nBatch:      []int{2048},
		nUBatch:     []int{512},
		typeK:       []string{"f16"},
		typeV:       []string{"f16"},
		nThreads:    []int{defaultThreads()},
		cpuMask:     []string{"0x0"},
		cpuStrict:   []bool{false},
		poll:        []int{50},
		nGPULayers:  []int{-1},
		nCPUMoE:     []int{0},
		splitMode:   []string{"layer"},
		loadMode:    []string{"auto"},
		lazyMode:    []string{"auto"},
		mainGPU:     []int{0},
		noKVOffload: []bool{false},
		flashAttn:   []int{-1},
		devices:     [][]string{nil},
		tensorSplit: [][]float32{nil},
		overrides:   []string{"none"},
		embeddings:  []bool{false},
		noOpOffload: []bool{false},
		noHost:      []bool{false},
		fitTarget:   []int{0},
		fitMinCtx:   []int{0},
		reps:        5,
		output:      "md",
		outputErr:   "none",
	}
}

// defaultThreads is llama-bench's default thread count (common_cpu_get_num_math): the
// physical cores.
func defaultThreads() int { return llama.PhysicalCores() }

var errHelp = errors.New("help requested")

// usageError is a command-line mistake: the caller prints it and the usage.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func badArg(format string, a ...any) error { return &usageError{fmt.Sprintf(format, a...)} }

// parseArgs parses llama-bench's command line. As upstream, each test parameter takes
// a comma-separated list (integers also take ranges, see parseIntRange) and may be
// repeated; a parameter given nowhere keeps its default list. Options named with
// "--" may spell '-' as '_'. "-name=value" is accepted too.
func parseArgs(args []string) (*params, error) {
	p := defaults()
	set := map[string]bool{} // lists given on the command line replace the defaults
	list := func(key string) bool {
		first := !set[key]
		set[key] = true
		return first
	}
	for i := 0; i < len(args); i++ {
		arg := args[i]
		name, inline, hasInline := arg, "", false
		if strings.HasPrefix(arg, "-") {
			if k := strings.IndexByte(arg, '='); k > 0 {
				name, inline, hasInline = arg[:k], arg[k+1:], true
			}
		}
		if strings.HasPrefix(name, "--") {
			name = strings.ReplaceAll(name, "_", "-")
		}
		value := func() (string, error) {
			if hasInline {
				return inline, nil
			}
			if i+1 >= len(args) {
				return "", badArg("missing value for %s", name)
			}
			i++
			return args[i], nil
		}
		o, ok := options[name]
		if !ok {
			return nil, badArg("unknown argument: %s", arg)
		}
		if o.flag != nil {
			if hasInline {
				return nil, badArg("%s takes no value", name)
			}
			if err := o.flag(&p); err != nil {
				return nil, err
			}
			continue
		}
		v, err := value()
		if err != nil {
			return nil, err
		}
		if err := o.set(&p, v, list(o.key)); err != nil {
			return nil, badArg("invalid value %q for %s: %v", v, name, err)
		}
	}
	if len(p.models) == 0 {
		p.models = []string{""} // the default synthetic model, resolved later
	}
	if p.reps < 1 {
		return nil, badArg("-r must be at least 1")
	}
	for _, n := range slices.Concat(p.nPrompt, p.nGen, p.nDepth) {
		if n < 0 {
			return nil, badArg("token counts must be >= 0")
		}
	}
	for _, n := range slices.Concat(p.nBatch, p.nUBatch, p.nThreads) {
		if n < 1 {
			return nil, badArg("-b, -ub and -t must be >= 1")
		}
	}
	return &p, nil
}

type option struct {
	names []string
	key   string // the list it fills (for replacing defaults)
	help  string
	// set parses one value; first is true for the first occurrence of the list.
	set  func(p *params, v string, first bool) error
	flag func(p *params) error // options without a value
}

// add appends values to a list, dropping its defaults on the list's first use.
func add[T any](dst *[]T, first bool, vs ...T) {
	if first {
		*dst = nil
	}
	*dst = append(*dst, vs...)
}

func intList(field func(*params) *[]int, negative bool) func(*params, string, bool) error {
	return func(p *params, v string, first bool) error {
		vs, err := parseIntRange(v, negative)
		if err != nil {
			return err
		}
		add(field(p), first, vs...)
		return nil
	}
}

func boolList(field func(*params) *[]bool) func(*params, string, bool) error {
	return func(p *params, v string, first bool) error {
		for s := range strings.SplitSeq(v, ",") {
			b, err := parseBool(s)
			if err != nil {
				return err
			}
			add(field(p), first, b)
			first = false
		}
		return nil
	}
}

func stringList(field func(*params) *[]string, valid ...string) func(*params, string, bool) error {
	return func(p *params, v string, first bool) error {
		for s := range strings.SplitSeq(v, ",") {
			if len(valid) > 0 && !slices.Contains(valid, s) {
				return fmt.Errorf("want one of %s", strings.Join(valid, ", "))
			}
			add(field(p), first, s)
			first = false
		}
		return nil
	}
}

// unsupported accepts only an option's default value: llamago does not expose what
// the option changes.
func unsupported(why string, set func(*params, string, bool) error, isDefault func(*params) bool) func(*params, string, bool) error {
	return func(p *params, v string, first bool) error {
		if err := set(p, v, first); err != nil {
			return err
		}
		if !isDefault(p) {
			return fmt.Errorf("only the default is supported: %s", why)
		}
		return nil
	}
}

func allEqual[T comparable](vs []T, want T) bool {
	for _, v := range vs {
		if v != want {
			return false
		}
	}
	return true
}

var cacheTypeNames = []string{"f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "iq4_nl"}

var options = map[string]*option{}

// optionList keeps the options in the order of the usage text.
var optionList = []*option{
	{names: []string{"-m", "--model"}, key: "model", help: "<filename>  GGUF model (default: a synthetic Qwen2-0.5B-shape Q8_0 model)",
		set: func(p *params, v string, first bool) error {
			add(&p.models, first, strings.Split(v, ",")...)
			return nil
		}},
	{names: []string{"-p", "--n-prompt"}, key: "p", help: "<n>  prompt tokens (default: 512)", set: intList(func(p *params) *[]int { return &p.nPrompt }, false)},
	{names: []string{"-n", "--n-gen"}, key: "n", help: "<n>  generated tokens (default: 128)", set: intList(func(p *params) *[]int { return &p.nGen }, false)},
	{names: []string{"-pg"}, key: "pg", help: "<pp,tg>  prompt then generation, one test (default: none)",
		set: func(p *params, v string, first bool) error {
			parts := strings.Split(v, ",")
			if len(parts) != 2 {
				return errors.New("want <pp>,<tg>")
			}
			var pg [2]int
			for i, s := range parts {
				n, err := strconv.Atoi(strings.TrimSpace(s))
				if err != nil || n < 0 {
					return fmt.Errorf("bad count %q", s)
				}
				pg[i] = n
			}
			add(&p.nPG, first, pg)
			return nil
		}},
	{names: []string{"-d", "--n-depth"}, key: "d", help: "<n>  tokens already in the KV cache (default: 0)", set: intList(func(p *params) *[]int { return &p.nDepth }, false)},
	{names: []string{"-b", "--batch-size"}, key: "b", help: "<n>  (default: 2048)", set: intList(func(p *params) *[]int { return &p.nBatch }, false)},
	{names: []string{"-ub", "--ubatch-size"}, key: "ub", help: "<n>  (default: 512)", set: intList(func(p *params) *[]int { return &p.nUBatch }, false)},
	{names: []string{"-ctk", "--cache-type-k"}, key: "ctk", help: "<t>  (default: f16)", set: stringList(func(p *params) *[]string { return &p.typeK }, cacheTypeNames...)},
	{names: []string{"-ctv", "--cache-type-v"}, key: "ctv", help: "<t>  (default: f16)", set: stringList(func(p *params) *[]string { return &p.typeV }, cacheTypeNames...)},
	{names: []string{"-t", "--threads"}, key: "t", help: "<n>  (default: physical cores, " + strconv.Itoa(defaultThreads()) + ")", set: intList(func(p *params) *[]int { return &p.nThreads }, false)},
	{names: []string{"-C", "--cpu-mask"}, key: "C", help: "<hex>  only 0x0 (llamago has no threadpool API)",
		set: unsupported("llamago has no threadpool API", stringList(func(p *params) *[]string { return &p.cpuMask }), func(p *params) bool { return allEqual(p.cpuMask, "0x0") })},
	{names: []string{"--cpu-strict"}, key: "cpu-strict", help: "<0|1>  only 0",
		set: unsupported("llamago has no threadpool API", boolList(func(p *params) *[]bool { return &p.cpuStrict }), func(p *params) bool { return allEqual(p.cpuStrict, false) })},
	{names: []string{"--poll"}, key: "poll", help: "<0...100>  only 50 (ggml's default)",
		set: unsupported("llamago has no threadpool API", intList(func(p *params) *[]int { return &p.poll }, false), func(p *params) bool { return allEqual(p.poll, 50) })},
	{names: []string{"-ngl", "--n-gpu-layers"}, key: "ngl", help: "<n>  (default: -1, all)", set: intList(func(p *params) *[]int { return &p.nGPULayers }, true)},
	{names: []string{"-ncmoe", "--n-cpu-moe"}, key: "ncmoe", help: "<n>  only 0",
		set: unsupported("llamago has no tensor buffer overrides", intList(func(p *params) *[]int { return &p.nCPUMoE }, false), func(p *params) bool { return allEqual(p.nCPUMoE, 0) })},
	{names: []string{"-sm", "--split-mode"}, key: "sm", help: "<none|layer|row|tensor>  (default: layer)",
		set: stringList(func(p *params) *[]string { return &p.splitMode }, "none", "layer", "row", "tensor")},
	{names: []string{"-mg", "--main-gpu"}, key: "mg", help: "<i>  (default: 0)",
		set: func(p *params, v string, _ bool) error {
			vs, err := parseIntRange(v, false)
			p.mainGPU = vs // as upstream, the last -mg wins
			return err
		}},
	{names: []string{"-nkvo", "--no-kv-offload"}, key: "nkvo", help: "<0|1>  (default: 0)", set: boolList(func(p *params) *[]bool { return &p.noKVOffload })},
	{names: []string{"-fa", "--flash-attn"}, key: "fa", help: "<on|off|auto>  also 1, 0, -1 (default: auto)",
		set: func(p *params, v string, first bool) error {
			for s := range strings.SplitSeq(v, ",") {
				fa, err := parseFlashAttn(s)
				if err != nil {
					return err
				}
				add(&p.flashAttn, first, fa)
				first = false
			}
			return nil
		}},
	{names: []string{"-dev", "--device"}, key: "dev", help: "<dev0/dev1/...>  device names (see --list-devices) or auto (default: auto)",
		set: func(p *params, v string, first bool) error {
			for combo := range strings.SplitSeq(v, ",") {
				combo = strings.TrimSpace(combo)
				var names []string
				switch combo {
				case "":
					return errors.New("no devices specified")
				case "auto":
				case "none":
					return errors.New("'none' is not supported: use -ngl 0 for the CPU only")
				default:
					for n := range strings.SplitSeq(combo, "/") {
						n = strings.TrimSpace(n)
						if n == "" {
							return errors.New("invalid device specification")
						}
						names = append(names, n)
					}
				}
				add(&p.devices, first, names)
				first = false
			}
			return nil
		}},
	{names: []string{"-lm", "--load-mode"}, key: "lm", help: "<auto|none|mmap|mlock|mmap+mlock>  (default: auto)",
		set: stringList(func(p *params) *[]string { return &p.loadMode }, "auto", "none", "mmap", "mlock", "mmap+mlock")},
	{names: []string{"-lzm", "--lazy-mode"}, key: "lzm", help: "<auto>  only auto",
		set: unsupported("llamago has no lazy-mode setting", stringList(func(p *params) *[]string { return &p.lazyMode }, "on", "auto", "off"), func(p *params) bool { return allEqual(p.lazyMode, "auto") })},
	{names: []string{"-mmp", "--mmap"}, key: "lm", help: "<0|1>  (deprecated upstream: -lm none|mmap)",
		set: func(p *params, v string, first bool) error {
			for s := range strings.SplitSeq(v, ",") {
				b, err := parseBool(s)
				if err != nil {
					return err
				}
				add(&p.loadMode, first, map[bool]string{false: "none", true: "mmap"}[b])
				first = false
			}
			return nil
		}},
	{names: []string{"-dio", "--direct-io"}, key: "lm", help: "<0>  (deprecated upstream) only 0, meaning -lm none",
		set: func(p *params, v string, first bool) error {
			for s := range strings.SplitSeq(v, ",") {
				b, err := parseBool(s)
				if err != nil {
					return err
				}
				if b {
					return errors.New("direct I/O is not supported by llamago")
				}
				add(&p.loadMode, first, "none")
				first = false
			}
			return nil
		}},
	{names: []string{"-embd", "--embeddings"}, key: "embd", help: "<0|1>  (default: 0)", set: boolList(func(p *params) *[]bool { return &p.embeddings })},
	{names: []string{"-ts", "--tensor-split"}, key: "ts", help: "<ts0/ts1/..>  (default: 0)",
		set: func(p *params, v string, first bool) error {
			for combo := range strings.SplitSeq(v, ",") {
				ts, err := parseTensorSplit(combo)
				if err != nil {
					return err
				}
				add(&p.tensorSplit, first, ts)
				first = false
			}
			return nil
		}},
	{names: []string{"-ot", "--override-tensor"}, key: "ot", help: "<pattern>=<buffer type>  only none",
		set: unsupported("llamago has no tensor buffer overrides", stringList(func(p *params) *[]string { return &p.overrides }), func(p *params) bool { return allEqual(p.overrides, "none") })},
	{names: []string{"-nopo", "--no-op-offload"}, key: "nopo", help: "<0|1>  (default: 0)", set: boolList(func(p *params) *[]bool { return &p.noOpOffload })},
	{names: []string{"--no-host"}, key: "no-host", help: "<0|1>  only 0",
		set: unsupported("llamago has no no_host setting", boolList(func(p *params) *[]bool { return &p.noHost }), func(p *params) bool { return allEqual(p.noHost, false) })},
	{names: []string{"-fitt", "--fit-target"}, key: "fitt", help: "<MiB>  only 0 (off)",
		set: unsupported("llamago does not fit models to memory", intList(func(p *params) *[]int { return &p.fitTarget }, false), func(p *params) bool { return allEqual(p.fitTarget, 0) })},
	{names: []string{"-fitc", "--fit-ctx"}, key: "fitc", help: "<n>  only 0",
		set: unsupported("llamago does not fit models to memory", intList(func(p *params) *[]int { return &p.fitMinCtx }, false), func(p *params) bool { return allEqual(p.fitMinCtx, 0) })},

	{names: []string{"-r", "--repetitions"}, key: "r", help: "<n>  repetitions of each test (default: 5)",
		set: func(p *params, v string, _ bool) (err error) { p.reps, err = strconv.Atoi(v); return err }},
	{names: []string{"--delay"}, key: "delay", help: "<seconds>  pause before each test (default: 0)",
		set: func(p *params, v string, _ bool) (err error) { p.delay, err = strconv.Atoi(v); return err }},
	{names: []string{"--prio"}, key: "prio", help: "<0>  only 0 (normal priority)",
		set: func(p *params, v string, _ bool) error {
			if n, err := strconv.Atoi(v); err != nil || n != 0 {
				return errors.New("only 0 is supported: run the command under nice/chrt instead")
			}
			return nil
		}},
	{names: []string{"-o", "--output"}, key: "o", help: "<csv|json|jsonl|md|sql|none>  format on stdout (default: md)",
		set: func(p *params, v string, _ bool) error { p.output = v; return checkFormat(v) }},
	{names: []string{"-oe", "--output-err"}, key: "oe", help: "<csv|json|jsonl|md|sql|none>  format on stderr (default: none)",
		set: func(p *params, v string, _ bool) error { p.outputErr = v; return checkFormat(v) }},
	{names: []string{"-v", "--verbose"}, help: "show llama.cpp's log", flag: func(p *params) error { p.verbose = true; return nil }},
	{names: []string{"--progress"}, help: "print progress on stderr", flag: func(p *params) error { p.progress = true; return nil }},
	{names: []string{"--no-warmup"}, help: "skip the warm-up runs", flag: func(p *params) error { p.noWarmup = true; return nil }},
	{names: []string{"-app", "--app"}, help: "after each generation test, add \"tgN (app)\": the same generation through\n" +
		"GenerateText with the default sampler chain (top-k 40, top-p 0.95, min-p 0.05, temp 0.8),\n" +
		"nothing attached by hand (on a GPU it samples on the device by itself)",
		flag: func(p *params) error { p.app = appendUnique(p.app, "auto"); return nil }},
	{names: []string{"-app-device", "--app-device"}, help: "the same with the sampler chain on the device (SetBackendSampler), \"tgN (app, device)\"",
		flag: func(p *params) error { p.app = appendUnique(p.app, "device"); return nil }},
	{names: []string{"-app-breakdown", "--app-breakdown"}, help: "after each app test, print on stderr where the time of a token went\n" +
		"(decode call, wait for the device, pick, text, loop), from the same loop written out",
		flag: func(p *params) error { p.appBreakdown = true; return nil }},
	{names: []string{"--list-devices"}, help: "list the devices and exit", flag: func(*params) error { return errListDevices }},
	{names: []string{"-h", "--help"}, help: "this help", flag: func(*params) error { return errHelp }},
}

var errListDevices = errors.New("list devices")

func init() {
	for _, o := range optionList {
		for _, n := range o.names {
			options[n] = o
		}
	}
}

func appendUnique(s []string, v string) []string {
	if slices.Contains(s, v) {
		return s
	}
	return append(s, v)
}

func checkFormat(f string) error {
	switch f {
	case "csv", "json", "jsonl", "md", "sql", "none":
		return nil
	}
	return errors.New("want csv, json, jsonl, md, sql or none")
}

func usage(w io.Writer) {
	fmt.Fprintf(w, `usage: bench [options]
       bench synth [-shape qwen2-0.5b] [-type q8_0]   write (once) and print a synthetic model's path
       bench compare -ours a.json[,b.json] -theirs c.json[,d.json]   compare with llama-bench's output
       bench batched [-npp 128] [-ntg 128] [-npl 8,32,64] [-upstream llama-batched-bench]   parallel
                     generation through package engine, as llama-batched-bench measures it (-h: options)

llama.cpp's llama-bench, measured through llamago: same tests, options and output formats.

options:
`)
	for _, o := range optionList {
		names := strings.Join(o.names, ", ")
		help := o.help
		if i := strings.Index(help, "  "); i >= 0 && o.flag == nil {
			names += " " + help[:i]
			help = help[i+2:]
		}
		fmt.Fprintf(w, "  %-34s %s\n", names, strings.ReplaceAll(help, "\n", "\n"+strings.Repeat(" ", 37)))
	}
	fmt.Fprint(w, `
Multiple values can be given for each test parameter by separating them with ','
or by giving the parameter several times. Ranges can be given as 'first-last',
'first-last+step' or 'first-last*mult'. Every combination is one test.
`)
}

// rangeRE is one element of an integer list: first[-last[(+|*)step]], as llama-bench
// accepts it ('|' is matched too, and refused, as upstream does).
var (
	rangeRE    = regexp.MustCompile(`^(\d+)(?:-(\d+)(?:([+|*])(\d+))?)?(?:,|$)`)
	rangeRENeg = regexp.MustCompile(`^(-?\d+)(?:-(\d+)(?:([+|*])(\d+))?)?(?:,|$)`)
)

// parseIntRange parses a comma-separated list of integers and ranges: "128,512",
// "1-4" (1,2,3,4), "16-64+16" (16,32,48,64), "64-512*2" (64,128,256,512).
// With negative, a single value or the start of a range may be negative (-ngl -1).
func parseIntRange(s string, negative bool) ([]int, error) {
	re := rangeRE
	if negative {
		re = rangeRENeg
	}
	var out []int
	rest := s
	for rest != "" {
		m := re.FindStringSubmatch(rest)
		if m == nil {
			return nil, errors.New("invalid range format")
		}
		rest = rest[len(m[0]):]
		first, err := strconv.Atoi(m[1])
		if err != nil {
			return nil, err
		}
		last, op, step := first, "+", 1
		if m[2] != "" {
			if last, err = strconv.Atoi(m[2]); err != nil {
				return nil, err
			}
		}
		if m[3] != "" {
			op = m[3]
			if step, err = strconv.Atoi(m[4]); err != nil {
				return nil, err
			}
		}
		for v := first; v <= last; {
			out = append(out, v)
			prev := v
			switch op {
			case "+":
				v += step
			case "*":
				v *= step
			default:
				return nil, errors.New("invalid range format")
			}
			if v <= prev {
				return nil, errors.New("invalid range")
			}
		}
	}
	return out, nil
}

func parseBool(s string) (bool, error) {
	switch strings.TrimSpace(s) {
	case "1", "true":
		return true, nil
	case "0", "false":
		return false, nil
	}
	return false, fmt.Errorf("bad boolean %q (want 0 or 1)", s)
}

// parseFlashAttn accepts llama.cpp's spellings and returns llama_flash_attn_type.
func parseFlashAttn(s string) (int, error) {
	switch s {
	case "on", "enabled", "true", "1":
		return 1, nil
	case "off", "disabled", "false", "0":
		return 0, nil
	case "auto", "-1":
		return -1, nil
	}
	return 0, fmt.Errorf("bad flash attention value %q (want on, off or auto)", s)
}

// parseTensorSplit parses proportions separated by '/' or ';'. Empty parts are
// skipped, as upstream's splitting does.
func parseTensorSplit(s string) ([]float32, error) {
	var ts []float32
	for f := range strings.FieldsFuncSeq(s, func(r rune) bool { return r == '/' || r == ';' }) {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 32)
		if err != nil || v < 0 {
			return nil, fmt.Errorf("bad proportion %q", f)
		}
		ts = append(ts, float32(v))
	}
	if n := llama.MaxDevices(); len(ts) > n {
		return nil, fmt.Errorf("%d proportions, this build supports %d devices", len(ts), n)
	}
	return ts, nil
}

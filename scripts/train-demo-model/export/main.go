// Command export writes the KJV demo model's GGUF from the weights train.py exported,
// with this module's gguf package, then checks that llama.cpp, through this module's
// binding, computes the logits PyTorch computed for the same tokens.
//
//	go run ./scripts/train-demo-model/export -in gpu-results/kjv -out models/kjv-demo.gguf
//
// The GGUF holds the Llama SPM tokenizer of llama.cpp's models/ggml-vocab-llama-spm.gguf
// (the one prepare.sh tokenized with; its checksum is verified), a plain-text chat
// template (the conversation is the text to continue), and a model card in its
// metadata: general.* keys and llamago.demo.* keys for the data, the training run and
// its losses, and a logits check (tokens, PyTorch's top token and logit per position)
// that the tests repeat.
//
// With -suppress-bos (the default) the output projection is not tied to the token
// embedding: the file carries output.weight, a copy of token_embd.weight whose BOS row is
// zero, so llama.cpp's logit for BOS is exactly 0 at every position, far below the
// model's confident predictions, and greedy generation never emits BOS (which would start
// a new document: the text would jump to another verse). The committed model needs it:
// its training run predated train.py's fix that ignores BOS targets in the loss. A model
// trained by the current train.py never learnt to predict BOS and loses nothing by it.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/llamago/llamago/internal/llamacpp"
	"github.com/llamago/llamago/internal/synth"
	"github.com/llamago/llamago/llama"
	"github.com/llamago/llamago/llama/gguf"
)

// Index is weights.json, written by train.py's export().
type Index struct {
	Format string `json:"format"`
	Config struct {
		Vocab    int     `json:"vocab"`
		Dim      int     `json:"dim"`
		Layers   int     `json:"layers"`
		Heads    int     `json:"heads"`
		KVHeads  int     `json:"kv_heads"`
		FFN      int     `json:"ffn"`
		Ctx      int     `json:"ctx"`
		RopeBase float64 `json:"rope_base"`
		Eps      float64 `json:"eps"`
	} `json:"config"`
	Shards []struct {
		File   string `json:"file"`
		NBytes int64  `json:"nbytes"`
	} `json:"shards"`
	Tensors []Blob `json:"tensors"`
	Check   struct {
		Tokens []int32 `json:"tokens"`
		Logits Blob    `json:"logits"`
	} `json:"check"`
	Parameters int64    `json:"parameters"`
	Training   Training `json:"training"`
	Data       Data     `json:"data"`
}

// Blob locates an array in the concatenated shards.
type Blob struct {
	Name   string  `json:"name"`
	Shape  []int64 `json:"shape"` // PyTorch order (row-major, slowest first)
	DType  string  `json:"dtype"` // "f16" or "f32"
	Offset int64   `json:"offset"`
	NBytes int64   `json:"nbytes"`
}

// Training is what train.py records about the run.
type Training struct {
	Steps          int64          `json:"steps"`
	TokensPerStep  int64          `json:"tokens_per_step"`
	TokensSeen     int64          `json:"tokens_seen"`
	Epochs         float64        `json:"epochs"`
	Seconds        float64        `json:"seconds"`
	FinalTrainLoss float64        `json:"final_train_loss"`
	FinalValLoss   float64        `json:"final_val_loss"`
	BestValLoss    float64        `json:"best_val_loss"`
	BestValStep    int64          `json:"best_val_step"`
	Date           string         `json:"date"`
	Device         string         `json:"device"`
	Torch          string         `json:"torch"`
	Command        string         `json:"command"`
	Hyper          map[string]any `json:"hyper"`
}

// Data is prepare.sh's meta.json, as train.py passed it on.
type Data struct {
	Source        string   `json:"source"`
	SourceCommand string   `json:"source_command"`
	SourceSHA256  string   `json:"source_sha256"`
	Package       string   `json:"package"`
	Vocab         string   `json:"vocab"`
	VocabSHA256   string   `json:"vocab_sha256"`
	Chapters      int      `json:"chapters"`
	Verses        int      `json:"verses"`
	ValChapters   []string `json:"val_chapters"`
	TrainTokens   int64    `json:"train_tokens"`
	ValTokens     int64    `json:"val_tokens"`
}

// ChatTemplate makes a conversation plain text for the model to continue: the messages'
// contents, trimmed, joined by spaces (the training text is a paragraph per chapter).
const ChatTemplate = `{%- for message in messages -%}
{%- if not loop.first %} {% endif -%}
{{- message['content'] | trim -}}
{%- endfor -%}`

const license = "Training text: public domain (King James Version, 1611). Weights: trained from scratch by the llamago project (scripts/train-demo-model); distributed on the terms of the llamago repository."

func main() {
	in := flag.String("in", "", "directory holding train.py's weights.json and weights-NNN.bin (required)")
	out := flag.String("out", "models/kjv-demo.gguf", "GGUF to write")
	typ := flag.String("type", "q8_0", "type of the weight matrices: q8_0, f16 or f32")
	vocab := flag.String("vocab", "", "vocab GGUF (default: llama.cpp's models/<the vocab prepare.sh used>)")
	check := flag.Bool("check", true, "compare llama.cpp's logits with PyTorch's after writing")
	suppressBOS := flag.Bool("suppress-bos", true, "write an untied output.weight: token_embd.weight with the BOS row zero, so the BOS logit is always 0")
	threads := flag.Int("t", 0, "threads for the check (0: physical cores)")
	flag.Parse()
	if err := run(*in, *out, *typ, *vocab, *check, *suppressBOS, *threads); err != nil {
		fmt.Fprintln(os.Stderr, "export:", err)
		os.Exit(1)
	}
}

func run(in, out, typ, vocab string, check, suppressBOS bool, threads int) error {
	if in == "" {
		return errors.New("-in is required")
	}
	t, err := gguf.ParseTensorType(typ)
	if err != nil {
		return err
	}
	idx, data, err := ReadWeights(in)
	if err != nil {
		return err
	}
	if vocab == "" {
		name := idx.Data.Vocab
		if name == "" {
			name = "ggml-vocab-llama-spm.gguf"
		}
		if vocab, err = llamacpp.Model(name); err != nil {
			return err
		}
	}
	meta, err := Metadata(idx, data, vocab, t, suppressBOS)
	if err != nil {
		return err
	}
	if err := WriteGGUF(out, idx, data, meta, t, suppressBOS); err != nil {
		return err
	}
	st, err := os.Stat(out)
	if err != nil {
		return err
	}
	fmt.Printf("wrote %s: %s, %.1f MiB (%d bytes), %d trained parameters\n", out, t, float64(st.Size())/(1<<20), st.Size(), idx.Parameters)
	skip := -1
	if suppressBOS {
		bos, err := BOSToken(meta)
		if err != nil {
			return err
		}
		skip = int(bos)
		fmt.Printf("BOS suppressed: output.weight is token_embd.weight with row %d (BOS) zero, so llama.cpp's BOS logit is always 0\n", bos)
	}
	if !check {
		return nil
	}
	ref, err := idx.Check.Logits.Float32s(data)
	if err != nil {
		return err
	}
	r, err := CompareLogits(context.Background(), out, idx.Check.Tokens, ref, threads, skip)
	if err != nil {
		return err
	}
	fmt.Printf("logits check, llama.cpp (%s) vs PyTorch (float32, %s-rounded weights), %d positions x %d: %s\n",
		t, idx.Tensors[0].DType, len(idx.Check.Tokens), idx.Config.Vocab, r)
	if skip >= 0 {
		if r.SkipMaxAbs != 0 {
			return fmt.Errorf("llama.cpp's BOS logit reaches %.3g, not 0: output.weight's BOS row is not zero", r.SkipMaxAbs)
		}
		fmt.Printf("BOS column (token %d) left out of the difference and the top tokens: llama.cpp's BOS logit is 0 at every position "+
			"(PyTorch's, unsuppressed, %.3g to %.3g); llama.cpp's top logit is at least %.3g at every position\n",
			skip, r.SkipRefMin, r.SkipRefMax, r.MinTop)
	}
	if tol := Tolerance(t); r.MaxAbs > tol*max(1, r.MaxRef) {
		return fmt.Errorf("logits differ by up to %.3g (tolerance %.3g for %s): the layout or rope does not match", r.MaxAbs, tol*max(1, r.MaxRef), t)
	}
	return nil
}

// BOSToken is the vocabulary's BOS token (tokenizer.ggml.bos_token_id) in the metadata.
func BOSToken(meta []gguf.KV) (int32, error) {
	for _, kv := range meta {
		if kv.Key != "tokenizer.ggml.bos_token_id" {
			continue
		}
		switch v := kv.Value.Any().(type) {
		case uint32:
			return int32(v), nil
		case int32:
			return v, nil
		}
		return 0, fmt.Errorf("tokenizer.ggml.bos_token_id is %s", kv.Value.Type())
	}
	return 0, errors.New("the vocabulary has no tokenizer.ggml.bos_token_id")
}

// BOSTargetsIgnored reports whether train.py recorded that its loss ignored BOS targets
// (runs before that fix did not record a loss).
func (tr *Training) BOSTargetsIgnored() bool {
	l, _ := tr.Hyper["loss"].(string)
	return strings.Contains(l, "BOS targets ignored")
}

// Tolerance is the largest difference between llama.cpp's and PyTorch's logits the
// check accepts, relative to the largest logit: llama.cpp's CPU matmuls round the
// activations to the weights' type (F16, or Q8_0 blocks) as well.
func Tolerance(t gguf.TensorType) float64 {
	switch t {
	case gguf.TypeF32:
		return 1e-4
	case gguf.TypeF16, gguf.TypeBF16:
		return 1e-2
	}
	return 5e-2
}

// ReadWeights reads weights.json and the concatenated shards.
func ReadWeights(dir string) (*Index, []byte, error) {
	b, err := os.ReadFile(filepath.Join(dir, "weights.json"))
	if err != nil {
		return nil, nil, err
	}
	var idx Index
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, nil, fmt.Errorf("weights.json: %w", err)
	}
	if idx.Format != "llamago-kjv-demo-weights/1" {
		return nil, nil, fmt.Errorf("weights.json: unknown format %q", idx.Format)
	}
	var data []byte
	for _, s := range idx.Shards {
		p, err := os.ReadFile(filepath.Join(dir, s.File))
		if err != nil {
			return nil, nil, err
		}
		if int64(len(p)) != s.NBytes {
			return nil, nil, fmt.Errorf("%s: %d bytes, weights.json says %d", s.File, len(p), s.NBytes)
		}
		data = append(data, p...)
	}
	return &idx, data, nil
}

// Float32s decodes the blob.
func (b Blob) Float32s(data []byte) ([]float32, error) {
	if b.Offset < 0 || b.NBytes < 0 || b.Offset+b.NBytes > int64(len(data)) {
		return nil, fmt.Errorf("%s: bytes %d+%d outside the %d bytes of the shards", b.Name, b.Offset, b.NBytes, len(data))
	}
	n := int64(1)
	for _, d := range b.Shape {
		n *= d
	}
	var t gguf.TensorType
	switch b.DType {
	case "f16":
		t = gguf.TypeF16
	case "f32":
		t = gguf.TypeF32
	default:
		return nil, fmt.Errorf("%s: unknown dtype %q", b.Name, b.DType)
	}
	v, err := gguf.Decode(make([]float32, 0, n), t, data[b.Offset:b.Offset+b.NBytes])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name, err)
	}
	if int64(len(v)) != n {
		return nil, fmt.Errorf("%s: %d values for shape %v", b.Name, len(v), b.Shape)
	}
	return v, nil
}

// Shape is the model's shape in the gguf package's terms. The trained model ties the
// output projection to the token embedding; with suppressBOS the file carries an
// output.weight of its own (TiedEmbeddings false), derived from token_embd.weight.
func (idx *Index) Shape(suppressBOS bool) synth.Shape {
	c := idx.Config
	return synth.Shape{Name: "kjv-demo", Arch: "llama", Vocab: "llama-spm", Embd: c.Dim, Layers: c.Layers,
		Heads: c.Heads, HeadsKV: c.KVHeads, FF: c.FFN, Ctx: c.Ctx, RopeBase: float32(c.RopeBase),
		RMSEps: float32(c.Eps), TiedEmbeddings: !suppressBOS}
}

// Metadata is the GGUF metadata: architecture, model card, tokenizer.
func Metadata(idx *Index, data []byte, vocabPath string, t gguf.TensorType, suppressBOS bool) ([]gguf.KV, error) {
	vb, err := os.ReadFile(vocabPath)
	if err != nil {
		return nil, err
	}
	if sum := sha256.Sum256(vb); idx.Data.VocabSHA256 != "" && hex.EncodeToString(sum[:]) != idx.Data.VocabSHA256 {
		return nil, fmt.Errorf("%s is not the vocabulary the training data was tokenized with (sha256 %s)", vocabPath, idx.Data.VocabSHA256)
	}
	vf, err := gguf.Open(vocabPath)
	if err != nil {
		return nil, err
	}
	defer vf.Close()
	var tok []gguf.KV
	nVocab := 0
	for _, kv := range vf.Metadata {
		if strings.HasPrefix(kv.Key, "tokenizer.") {
			tok = append(tok, kv)
		}
		if kv.Key == "tokenizer.ggml.tokens" {
			nVocab = kv.Value.Len()
		}
	}
	if nVocab != idx.Config.Vocab {
		return nil, fmt.Errorf("%s has %d tokens, the model %d", vocabPath, nVocab, idx.Config.Vocab)
	}
	tok = append(tok, gguf.KV{Key: "tokenizer.chat_template", Value: gguf.String(ChatTemplate)})
	bos := int32(-1) // the column left out of the check's top tokens
	if suppressBOS {
		if bos, err = BOSToken(tok); err != nil {
			return nil, fmt.Errorf("%s: %w", vocabPath, err)
		}
	}

	s := idx.Shape(suppressBOS)
	if err := s.Validate(); err != nil {
		return nil, err
	}
	ft := map[gguf.TensorType]gguf.FileType{gguf.TypeF32: gguf.FileTypeAllF32, gguf.TypeF16: gguf.FileTypeMostlyF16,
		gguf.TypeQ8_0: gguf.FileTypeMostlyQ8_0}[t]
	if ft == 0 && t != gguf.TypeF32 {
		return nil, fmt.Errorf("type %s is not supported (use q8_0, f16 or f32)", t)
	}
	tr := idx.Training
	sizeLabel := fmt.Sprintf("%.0fM", float64(idx.Parameters)/1e6)
	desc := fmt.Sprintf("A %s-parameter Llama-architecture model (%d layers, %d dims, %d heads, tied embeddings, "+
		"context %d) trained from scratch on the King James Bible by llamago's scripts/train-demo-model, so that "+
		"`make run` shows real text out of the box. It continues KJV-style text and knows nothing else. "+
		"Trained %d steps (%.0f epochs, %.0f s on %s); final loss %.3f on the training text, %.3f on %d held-out chapters (best %.3f).",
		sizeLabel, s.Layers, s.Embd, s.Heads, s.Ctx, tr.Steps, tr.Epochs, tr.Seconds, tr.Device,
		tr.FinalTrainLoss, tr.FinalValLoss, len(idx.Data.ValChapters), tr.BestValLoss)
	if suppressBOS {
		why := "The training run predated train.py's fix that ignores BOS targets in the loss, so the model learnt " +
			"to predict BOS after a verse and, generating, would emit it and jump to another verse; "
		if tr.BOSTargetsIgnored() {
			why = "The training ignored BOS targets, so the model never learnt to predict BOS; as a safeguard, "
		}
		desc += " " + why + fmt.Sprintf("the file's output.weight is therefore not trained but derived: a copy of "+
			"token_embd.weight with the BOS row (token %d) zero, so the BOS logit is always exactly 0 "+
			"(the parameter count is that of the trained, tied model).", bos)
	}
	hyper, _ := json.Marshal(tr.Hyper)

	a := "llama."
	kv := []gguf.KV{
		{Key: "general.architecture", Value: gguf.String("llama")},
		{Key: "general.type", Value: gguf.String("model")},
		{Key: "general.name", Value: gguf.String("KJV demo")},
		{Key: "general.basename", Value: gguf.String("kjv-demo")},
		{Key: "general.size_label", Value: gguf.String(sizeLabel)},
		{Key: "general.author", Value: gguf.String("llamago")},
		{Key: "general.organization", Value: gguf.String("llamago")},
		{Key: "general.description", Value: gguf.String(desc)},
		{Key: "general.license", Value: gguf.String(license)},
		{Key: "general.source.url", Value: gguf.String("https://packages.debian.org/bookworm/bible-kjv-text")},
		{Key: "general.tags", Value: gguf.Array([]string{"demo", "text-generation", "king-james-bible", "from-scratch"})},
		{Key: "general.languages", Value: gguf.Array([]string{"en"})},
		{Key: a + "block_count", Value: gguf.Uint32(uint32(s.Layers))},
		{Key: a + "context_length", Value: gguf.Uint32(uint32(s.Ctx))},
		{Key: a + "embedding_length", Value: gguf.Uint32(uint32(s.Embd))},
		{Key: a + "feed_forward_length", Value: gguf.Uint32(uint32(s.FF))},
		{Key: a + "attention.head_count", Value: gguf.Uint32(uint32(s.Heads))},
		{Key: a + "attention.head_count_kv", Value: gguf.Uint32(uint32(s.HeadsKV))},
		{Key: a + "rope.freq_base", Value: gguf.Float32(s.RopeBase)},
		{Key: a + "attention.layer_norm_rms_epsilon", Value: gguf.Float32(s.RMSEps)},
		{Key: "general.file_type", Value: gguf.Uint32(uint32(ft))},
		{Key: a + "vocab_size", Value: gguf.Uint32(uint32(nVocab))},
		{Key: a + "rope.dimension_count", Value: gguf.Uint32(uint32(s.HeadDim()))},
	}
	if t == gguf.TypeQ8_0 {
		kv = append(kv, gguf.KV{Key: "general.quantization_version", Value: gguf.Uint32(2)})
	}

	d := idx.Data
	data0 := fmt.Sprintf("%s (%s), text from `%s`, sha256 %s; %d chapters, %d verses", d.Source, d.Package,
		d.SourceCommand, d.SourceSHA256, d.Chapters, d.Verses)
	p := "llamago.demo."
	kv = append(kv,
		gguf.KV{Key: p + "data", Value: gguf.String(data0)},
		gguf.KV{Key: p + "data_license", Value: gguf.String("public domain")},
		gguf.KV{Key: p + "tokenizer", Value: gguf.String(fmt.Sprintf("llama.cpp models/%s (sha256 %s), tokenized with llamago's binding", d.Vocab, d.VocabSHA256))},
		gguf.KV{Key: p + "val_chapters", Value: gguf.Array(d.ValChapters)},
		gguf.KV{Key: p + "train_tokens", Value: gguf.Uint64(uint64(d.TrainTokens))},
		gguf.KV{Key: p + "val_tokens", Value: gguf.Uint64(uint64(d.ValTokens))},
		gguf.KV{Key: p + "parameters", Value: gguf.Uint64(uint64(idx.Parameters))},
		gguf.KV{Key: p + "training_steps", Value: gguf.Uint64(uint64(tr.Steps))},
		gguf.KV{Key: p + "training_tokens", Value: gguf.Uint64(uint64(tr.TokensSeen))},
		gguf.KV{Key: p + "training_epochs", Value: gguf.Float32(float32(tr.Epochs))},
		gguf.KV{Key: p + "training_seconds", Value: gguf.Float32(float32(tr.Seconds))},
		gguf.KV{Key: p + "training_device", Value: gguf.String(tr.Device)},
		gguf.KV{Key: p + "training_date", Value: gguf.String(tr.Date)},
		gguf.KV{Key: p + "training_command", Value: gguf.String("python3 scripts/train-demo-model/" + tr.Command)},
		gguf.KV{Key: p + "training_hyperparameters", Value: gguf.String(string(hyper))},
		gguf.KV{Key: p + "torch_version", Value: gguf.String(tr.Torch)},
		gguf.KV{Key: p + "final_train_loss", Value: gguf.Float32(float32(tr.FinalTrainLoss))},
		gguf.KV{Key: p + "final_val_loss", Value: gguf.Float32(float32(tr.FinalValLoss))},
		gguf.KV{Key: p + "best_val_loss", Value: gguf.Float32(float32(tr.BestValLoss))},
		gguf.KV{Key: p + "bos_suppressed", Value: gguf.Bool(suppressBOS)},
	)

	// The logits check, small enough for metadata: PyTorch's top token and its logit at
	// each position of the check tokens (BOS left out when it is suppressed: llama.cpp
	// gives it 0).
	ref, err := idx.Check.Logits.Float32s(data)
	if err != nil {
		return nil, err
	}
	n := len(idx.Check.Tokens)
	if len(ref) != n*nVocab {
		return nil, fmt.Errorf("check logits: %d values for %d tokens", len(ref), n)
	}
	top := make([]int32, n)
	topLogit := make([]float32, n)
	for i := range n {
		row := ref[i*nVocab : (i+1)*nVocab]
		top[i] = -1
		for j, v := range row {
			if int32(j) != bos && (top[i] < 0 || v > row[top[i]]) {
				top[i] = int32(j)
			}
		}
		topLogit[i] = row[top[i]]
	}
	kv = append(kv,
		gguf.KV{Key: p + "check.tokens", Value: gguf.Array(idx.Check.Tokens)},
		gguf.KV{Key: p + "check.top_token", Value: gguf.Array(top)},
		gguf.KV{Key: p + "check.top_logit", Value: gguf.Array(topLogit)},
	)
	return append(kv, tok...), nil
}

// WriteGGUF writes the model through a temporary file renamed into place. With
// suppressBOS it writes output.weight, token_embd.weight with the row of meta's BOS
// token zero, in the type of the other matrices.
func WriteGGUF(path string, idx *Index, data []byte, meta []gguf.KV, t gguf.TensorType, suppressBOS bool) (err error) {
	infos, err := idx.Shape(suppressBOS).Tensors(idx.Config.Vocab, t)
	if err != nil {
		return err
	}
	blobs := map[string]Blob{}
	for _, b := range idx.Tensors {
		blobs[b.Name] = b
	}
	derived := 0
	bos := int32(-1)
	if suppressBOS {
		if _, ok := blobs["output.weight"]; ok {
			return errors.New("weights.json has an untied output.weight; -suppress-bos expects the tied model train.py writes")
		}
		if bos, err = BOSToken(meta); err != nil {
			return err
		}
		derived = 1
	}
	if len(blobs)+derived != len(infos) {
		return fmt.Errorf("weights.json has %d tensors, the GGUF layout %d", len(blobs), len(infos)-derived)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	w, err := gguf.NewWriter(f, meta, infos)
	if err != nil {
		return err
	}
	var buf []byte
	for _, ti := range infos {
		name := ti.Name
		if suppressBOS && name == "output.weight" {
			name = "token_embd.weight"
		}
		b, ok := blobs[name]
		if !ok {
			return fmt.Errorf("weights.json lacks %s", ti.Name)
		}
		// PyTorch's [out, in] row-major is ggml's [in, out]: the shapes are reversed.
		if len(b.Shape) != len(ti.Shape) {
			return fmt.Errorf("%s: shape %v, llama.cpp expects %v (ggml order)", ti.Name, b.Shape, ti.Shape)
		}
		for i, d := range ti.Shape {
			if b.Shape[len(b.Shape)-1-i] != d {
				return fmt.Errorf("%s: shape %v, llama.cpp expects %v (ggml order)", ti.Name, b.Shape, ti.Shape)
			}
		}
		v, err := b.Float32s(data)
		if err != nil {
			return err
		}
		if name != ti.Name { // output.weight: the BOS row zero
			row := int(ti.Shape[0])
			if bos < 0 || int64(bos) >= ti.Shape[1] {
				return fmt.Errorf("BOS token %d outside the vocabulary of %d", bos, ti.Shape[1])
			}
			clear(v[int(bos)*row : int(bos+1)*row])
		}
		if buf, err = gguf.Encode(buf[:0], ti.Type, v); err != nil {
			return fmt.Errorf("%s: %w", ti.Name, err)
		}
		if err := w.WriteTensor(ti.Name, buf); err != nil {
			return err
		}
	}
	if err := w.Close(); err != nil {
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// Diff summarises how two sets of logits differ.
type Diff struct {
	MaxAbs, RMS, MaxRef float64 // largest and root-mean-square difference; largest |reference logit|
	TopAgree, N         int     // positions whose top token agrees, of N
	// The column left out (Skip >= 0): the largest |logit| llama.cpp gave it, the
	// reference's smallest and largest logit there, and the smallest top logit
	// llama.cpp gave the other columns at a position.
	Skip                               int
	SkipMaxAbs, SkipRefMin, SkipRefMax float64
	MinTop                             float64
}

func (d Diff) String() string {
	s := fmt.Sprintf("max |diff| %.3g (%.2g of the largest logit %.3g), rms diff %.3g, top token agrees at %d/%d positions",
		d.MaxAbs, d.MaxAbs/max(d.MaxRef, 1e-30), d.MaxRef, d.RMS, d.TopAgree, d.N)
	if d.Skip >= 0 {
		s += fmt.Sprintf(" (token %d left out)", d.Skip)
	}
	return s
}

// CompareLogits decodes tokens with llama.cpp on the CPU (see [Logits]) and compares
// the logits with ref (len(tokens) rows of n_vocab), leaving column skip out of the
// differences and the top tokens when skip >= 0 (the suppressed BOS).
func CompareLogits(ctx context.Context, path string, tokens []int32, ref []float32, threads, skip int) (Diff, error) {
	n := len(tokens)
	if n == 0 || len(ref)%n != 0 {
		return Diff{}, fmt.Errorf("reference has %d logits for %d tokens", len(ref), n)
	}
	nv := len(ref) / n
	all, err := Logits(ctx, path, tokens, threads)
	if err != nil {
		return Diff{}, err
	}
	if len(all) != len(ref) {
		return Diff{}, fmt.Errorf("reference has %d logits, want %d x %d", len(ref), n, len(all)/n)
	}
	d := Diff{Skip: skip, SkipRefMin: math.Inf(1), SkipRefMax: math.Inf(-1), MinTop: math.Inf(1)}
	if skip < 0 || skip >= nv {
		d.Skip = -1
	}
	var sum float64
	for i := range n {
		got := all[i*nv : (i+1)*nv]
		want := ref[i*nv : (i+1)*nv]
		gt, wt := -1, -1
		for j := range nv {
			if j == d.Skip {
				d.SkipMaxAbs = max(d.SkipMaxAbs, math.Abs(float64(got[j])))
				d.SkipRefMin = min(d.SkipRefMin, float64(want[j]))
				d.SkipRefMax = max(d.SkipRefMax, float64(want[j]))
				continue
			}
			e := float64(got[j]) - float64(want[j])
			d.MaxAbs = max(d.MaxAbs, math.Abs(e))
			d.MaxRef = max(d.MaxRef, math.Abs(float64(want[j])))
			sum += e * e
			if gt < 0 || got[j] > got[gt] {
				gt = j
			}
			if wt < 0 || want[j] > want[wt] {
				wt = j
			}
		}
		if gt == wt {
			d.TopAgree++
		}
		d.MinTop = min(d.MinTop, float64(got[gt]))
	}
	d.N = n
	cols := nv
	if d.Skip >= 0 {
		cols--
	}
	d.RMS = math.Sqrt(sum / float64(n*cols))
	return d, nil
}

// Logits decodes tokens with llama.cpp on the CPU (F32 KV cache, flash attention off),
// all in one batch, and returns every position's logits (len(tokens) rows of n_vocab).
func Logits(ctx context.Context, path string, tokens []int32, threads int) ([]float32, error) {
	m, err := llama.LoadModel(ctx, path, &llama.ModelParams{GPULayers: 0})
	if err != nil {
		return nil, err
	}
	defer m.Close()
	n := len(tokens)
	nv := m.Vocab().NTokens
	// An F32 KV cache keeps the cache's rounding out of the comparison.
	c, err := m.NewContext(&llama.ContextParams{NCtx: max(n, 64), NBatch: max(n, 64), NUBatch: max(n, 64),
		Threads: threads, TypeK: llama.CacheF32, TypeV: llama.CacheF32, FlashAttention: llama.FlashAttentionOff})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	b, err := llama.NewBatch(n, 1)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	for i, t := range tokens {
		if err := b.Add(llama.Token(t), llama.Pos(i), true, 0); err != nil {
			return nil, err
		}
	}
	if err := c.Decode(ctx, b); err != nil {
		return nil, err
	}
	out := make([]float32, 0, n*nv)
	for i := range n {
		got, err := c.LogitsView(i)
		if err != nil {
			return nil, err
		}
		if len(got) != nv {
			return nil, fmt.Errorf("position %d: %d logits, the vocabulary has %d", i, len(got), nv)
		}
		out = append(out, got...)
	}
	return out, nil
}

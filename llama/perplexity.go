package llama

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"strings"
	"sync"
)

// PerplexityParams configures Model.Perplexity. Zero values are llama-perplexity's defaults.
type PerplexityParams struct {
	// Context configures the evaluation context. NCtx is the chunk size (llama-perplexity's
	// -c, 0 = 512) and NBatch its -b (0 = 2048); the context itself gets
	// max(1, NBatch/NCtx) sequences of NCtx tokens, as upstream does. Embeddings must be off.
	Context ContextParams
	// Chunks limits the number of chunks evaluated (--chunks); 0 = all.
	Chunks int
	// Progress, when set, is called after every evaluated chunk.
	Progress func(PerplexityProgress)
}

// PerplexityProgress reports the running estimate after a chunk.
type PerplexityProgress struct {
	Chunk, Chunks int     // chunks done, of the total
	PPL           float64 // perplexity over the chunks done
}

// PerplexityResult is the outcome of Model.Perplexity.
type PerplexityResult struct {
	PPL    float64 // exp(mean negative log-likelihood)
	StdErr float64 // upstream's ± estimate: PPL · stddev(nll) / sqrt(Tokens-1)
	Tokens int     // tokens scored
	Chunks int     // chunks evaluated
	NCtx   int     // chunk size
}

// String prints the result as llama-perplexity's final line does.
func (r PerplexityResult) String() string {
	return fmt.Sprintf("Final estimate: PPL = %.4f +/- %.5f", r.PPL, r.StdErr)
}

// Perplexity measures the model's perplexity on text with llama-perplexity's method
// (its default mode): the text is tokenized (with BOS where the vocabulary adds one) and
// cut into chunks of NCtx tokens; each chunk is decoded from an empty cache with its
// first token replaced by BOS, and only the second half of each chunk is scored (every
// prediction has at least NCtx/2 tokens of context). max(1, NBatch/NCtx) chunks are
// decoded together as separate sequences, in the batch layout upstream uses, so the
// result matches llama-perplexity of the same build. The text needs at least 2·NCtx tokens.
func (m *Model) Perplexity(ctx context.Context, text string, p *PerplexityParams) (*PerplexityResult, error) {
	var pp PerplexityParams
	if p != nil {
		pp = *p
	}
	cp := pp.Context
	if cp.Embeddings {
		return nil, invalidParam("perplexity needs logits: Embeddings must be off")
	}
	if cp.NCtx < 0 || cp.NBatch < 0 || pp.Chunks < 0 {
		return nil, invalidParam("NCtx, NBatch and Chunks must be >= 0")
	}
	nCtx, nBatch := cp.NCtx, cp.NBatch
	if nCtx == 0 {
		nCtx = 512
	}
	if nBatch == 0 {
		nBatch = 2048
	}
	if nCtx < 4 {
		return nil, invalidParam("NCtx %d is too small to score half a chunk", nCtx)
	}
	nSeq := max(1, nBatch/nCtx)
	nBatch = min(nBatch, nSeq*nCtx)
	if !(nBatch < nCtx || nBatch%nCtx == 0) {
		return nil, invalidParam("NBatch %d must be below NCtx %d or a multiple of it", nBatch, nCtx)
	}
	if nSeq > maxParallelSequences() {
		return nil, invalidParam("NBatch/NCtx = %d sequences, llama.cpp supports at most %d", nSeq, maxParallelSequences())
	}
	v := m.Vocab()
	if v.AddEOS {
		return nil, invalidParam("the vocabulary appends EOS on tokenization; llama-perplexity refuses such models")
	}
	// llama-perplexity reads the file whole and drops one trailing newline.
	text = strings.TrimSuffix(text, "\n")
	tokens, err := m.Tokenize(text, AddSpecial)
	if err != nil {
		return nil, err
	}
	if len(tokens) < 2*nCtx {
		return nil, invalidParam("the text has %d tokens; perplexity with NCtx %d needs at least %d", len(tokens), nCtx, 2*nCtx)
	}
	nChunk := len(tokens) / nCtx
	if pp.Chunks > 0 {
		nChunk = min(nChunk, pp.Chunks)
	}

	cp.NCtx = nSeq * nCtx
	cp.NBatch = nBatch
	cp.NSeqMax = nSeq
	c, err := m.NewContext(&cp)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if c.nCtx < nSeq*nCtx || c.nBatch < nBatch {
		return nil, invalidParam("the context has %d tokens and batch %d, the evaluation needs %d and %d (the model's training context may cap them)", c.nCtx, c.nBatch, nSeq*nCtx, nBatch)
	}
	if err := c.enter(); err != nil {
		return nil, err
	}
	defer c.mu.Unlock()
	defer c.arm(ctx)()

	b, err := NewBatch(nBatch, 1)
	if err != nil {
		return nil, err
	}
	defer b.Close()

	var (
		first      = nCtx / 2
		numBatches = (nCtx + nBatch - 1) / nBatch
		acc        nllAccumulator
		count      int
		addBOS     = v.AddBOS && v.BOS != NoToken
	)
	for i := 0; i < nChunk; i += nSeq {
		start := i * nCtx
		nSeqBatch := min(nSeq, nChunk-i)
		c.memoryClear()
		for j := range numBatches {
			batchStart := start + j*nBatch
			batchSize := min(start+nCtx-batchStart, nBatch)
			b.Clear()
			for seq := range nSeqBatch {
				seqStart := batchStart + seq*nCtx
				for k := range batchSize {
					t := tokens[seqStart+k]
					if addBOS && j == 0 && k == 0 {
						t = v.BOS
					}
					pos := j*nBatch + k
					if err := b.Add(t, Pos(pos), pos >= first, SeqID(seq)); err != nil {
						return nil, err
					}
				}
			}
			if err := c.run(ctx, b, false); err != nil {
				return nil, err
			}
			// Score this batch's outputs: the logits at chunk position pos predict the
			// token at pos+1; positions first .. nCtx-2 are scored.
			for seq := range nSeqBatch {
				var rows []int
				var next []Token
				for k := range batchSize {
					pos := j*nBatch + k
					if pos < first || pos >= nCtx-1 {
						continue
					}
					rows = append(rows, seq*batchSize+k)
					next = append(next, tokens[start+seq*nCtx+pos+1])
				}
				if err := c.scoreRows(rows, next, &acc); err != nil {
					return nil, err
				}
				count += len(rows)
			}
		}
		if pp.Progress != nil {
			pp.Progress(PerplexityProgress{Chunk: i + nSeqBatch, Chunks: nChunk, PPL: math.Exp(acc.nll / float64(count))})
		}
	}
	c.memoryClear()
	res := &PerplexityResult{Tokens: count, Chunks: nChunk, NCtx: nCtx}
	nll := acc.nll / float64(count)
	nll2 := acc.nll2/float64(count) - nll*nll
	res.PPL = math.Exp(nll)
	if nll2 > 0 {
		res.StdErr = math.Sqrt(nll2/float64(count-1)) * res.PPL
	}
	return res, nil
}

type nllAccumulator struct{ nll, nll2 float64 }

// scoreRows adds the negative log-likelihood of token next[i] under the logits of batch
// index rows[i] of the last decode, computing the log-softmaxes in parallel.
func (c *Context) scoreRows(rows []int, next []Token, acc *nllAccumulator) error {
	if len(rows) == 0 {
		return nil
	}
	views := make([][]float32, len(rows))
	for i, r := range rows {
		v, err := c.logitsView(r)
		if err != nil {
			return err
		}
		views[i] = v
	}
	workers := min(runtime.GOMAXPROCS(0), len(rows))
	var (
		wg sync.WaitGroup
		mu sync.Mutex
	)
	for w := range workers {
		wg.Go(func() {
			var local nllAccumulator
			for i := w; i < len(rows); i += workers {
				v := -logSoftmax(views[i], next[i])
				local.nll += v
				local.nll2 += v * v
			}
			mu.Lock()
			acc.nll += local.nll
			acc.nll2 += local.nll2
			mu.Unlock()
		})
	}
	wg.Wait()
	return nil
}

// logSoftmax returns log p(tok) under logits, as llama-perplexity computes it: the
// maximum in float, the sum of exponentials in double.
func logSoftmax(logits []float32, tok Token) float64 {
	maxLogit := logits[0]
	for _, x := range logits[1:] {
		maxLogit = max(maxLogit, x)
	}
	var sum float64
	for _, x := range logits {
		sum += math.Exp(float64(x - maxLogit))
	}
	return float64(logits[tok]-maxLogit) - math.Log(sum)
}

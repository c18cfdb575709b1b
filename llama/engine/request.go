package engine

import (
	"context"
	"fmt"
	"iter"
	"sync"
	"sync/atomic"
	"time"

	"github.com/llamago/llamago/llama"
)

// Request is one generation.
type Request struct {
	// Prompt is the tokenized prompt (with BOS where the model wants one).
	Prompt []llama.Token
	// Sampling configures the request's own sampler; nil: llama.DefaultSamplingParams.
	Sampling *llama.SamplingParams
	// Sampler, when not nil, is used instead of Sampling (e.g. from
	// llama.ChatPrompt.NewSampler). The request owns it from then on and closes it.
	Sampler *llama.Sampler
	// Visible are special tokens whose text is part of the output (see llama.NewTextStream).
	Visible []llama.Token
	// MaxTokens bounds the generated tokens; 0: Params.DefaultMaxTokens, else the
	// context's end.
	MaxTokens int
	// Stop strings end the generation; they are never emitted.
	Stop []string
	// IgnoreEOG keeps generating past end-of-generation tokens.
	IgnoreEOG bool
	// Logprobs records the log-probability of each generated token in Delta.Logprobs,
	// with TopLogprobs (at most 20) alternatives; such a request samples on the CPU.
	Logprobs    bool
	TopLogprobs int
	// Media, when not nil, is a prompt with images or audio (llama.Projector.Prompt), used
	// instead of Prompt (which must be empty): the engine evaluates it into the request's
	// slot when admitted (no prefix reuse: the slot starts empty) and then decodes
	// Media.Text() as the prompt. The caller closes it once the iteration ends.
	Media *llama.MediaPrompt
	// Result, when not nil, is filled in when the iteration ends.
	Result *Result
}

// Delta is the next part of a generation: its text (valid UTF-8, possibly empty while
// text is held back for stop strings) and the tokens generated since the last Delta,
// with their log-probabilities when the request asked (Request.Logprobs).
type Delta struct {
	Text     string
	Tokens   []llama.Token
	Logprobs []llama.Generated
}

// Result summarises a request.
type Result struct {
	FinishReason    llama.FinishReason
	Err             error
	PromptTokens    int
	CachedTokens    int // prompt tokens reused from the prefix cache, not decoded
	GeneratedTokens int
	DeviceSampling  bool // the request sampled on the device (Params.DeviceSampling)
	// Drafted tokens were proposed by the slot's drafter (Params.NewDrafter);
	// DraftAccepted of them were what the request's sampler picked.
	Drafted, DraftAccepted int
	Queued                 time.Duration // waiting for a slot
	TimeToFirst            time.Duration // from admission to the first generated token
	Total                  time.Duration // from Generate to the end
}

// Generate queues a request and yields its output as it is generated. Ranging over it
// runs the request; it can be ranged over once. Cancelling ctx, or stopping the range,
// ends the request and frees its slot at once. Errors come as the last value: bad
// parameters and ErrTooLong before queueing, ErrQueueFull when the queue is full,
// ErrClosed when the engine closes, llama.ErrAborted with ctx's cause on cancellation.
func (e *Engine) Generate(ctx context.Context, req *Request) iter.Seq2[Delta, error] {
	return func(yield func(Delta, error) bool) {
		start := time.Now()
		j, err := e.newJob(req)
		if err != nil {
			if req != nil && req.Sampler != nil {
				req.Sampler.Close()
			}
			e.report(req, start, Result{FinishReason: llama.FinishError, Err: err})
			yield(Delta{}, err)
			return
		}
		defer j.sampler.Close()
		if err := e.submit(j); err != nil {
			e.report(req, start, Result{FinishReason: llama.FinishError, Err: err, PromptTokens: j.promptLen})
			yield(Delta{}, err)
			return
		}
		stop := context.AfterFunc(ctx, func() { j.cancel(llama.ErrAborted, context.Cause(ctx)); e.signal() })
		defer stop()
		for {
			<-j.notify
			deltas, done := j.take()
			for _, d := range deltas {
				if !yield(d, nil) {
					j.cancel(nil, nil)
					e.signal()
					<-j.ended // the engine lets go of the sampler before it is closed
					e.report(req, start, j.result())
					return
				}
			}
			if done {
				res := j.result()
				e.report(req, start, res)
				if res.Err != nil {
					yield(Delta{}, res.Err)
				}
				return
			}
		}
	}
}

func (e *Engine) report(req *Request, start time.Time, r Result) {
	if req != nil && req.Result != nil {
		r.Total = time.Since(start)
		*req.Result = r
	}
}

// newJob checks a request and builds its sampler.
func (e *Engine) newJob(req *Request) (*job, error) {
	if req == nil {
		return nil, fmt.Errorf("%w: engine: empty prompt (no request)", llama.ErrInvalidBatch)
	}
	prompt, promptLen := req.Prompt, len(req.Prompt)
	if req.Media != nil {
		if len(req.Prompt) > 0 {
			return nil, fmt.Errorf("%w: engine: a request with Media has no Prompt of its own", llama.ErrInvalidParams)
		}
		prompt, promptLen = req.Media.Text(), req.Media.Tokens()
	}
	if len(prompt) == 0 {
		return nil, fmt.Errorf("%w: engine: empty prompt", llama.ErrInvalidBatch)
	}
	if req.MaxTokens < 0 {
		return nil, fmt.Errorf("%w: engine: negative MaxTokens", llama.ErrInvalidParams)
	}
	if req.TopLogprobs < 0 || req.TopLogprobs > 20 || (req.TopLogprobs > 0 && !req.Logprobs) {
		return nil, fmt.Errorf("%w: engine: TopLogprobs %d: want 0 to 20, with Logprobs", llama.ErrInvalidParams, req.TopLogprobs)
	}
	for _, t := range prompt {
		if !e.model.ValidToken(t) {
			return nil, fmt.Errorf("%w: %d in the prompt", llama.ErrInvalidToken, t)
		}
	}
	room := e.nCtx - promptLen
	maxTokens := req.MaxTokens
	if maxTokens == 0 {
		maxTokens = room
		if e.cfg.DefaultMaxTokens > 0 {
			maxTokens = min(maxTokens, e.cfg.DefaultMaxTokens)
		}
	}
	if maxTokens < 1 || maxTokens > room {
		return nil, fmt.Errorf("%w: %d prompt tokens + %d to generate > %d", ErrTooLong, promptLen, max(maxTokens, 1), e.nCtx)
	}
	smp := req.Sampler
	if smp == nil {
		sp := llama.DefaultSamplingParams()
		if req.Sampling != nil {
			sp = *req.Sampling
		}
		var err error
		if smp, err = llama.NewSamplerFromParams(e.model, &sp); err != nil {
			return nil, err
		}
	}
	return &job{
		req: req, prompt: prompt, promptLen: promptLen, sampler: smp, maxTokens: maxTokens,
		text:   llama.NewTextStream(e.model, req.Stop, req.Visible),
		notify: make(chan struct{}, 1), ended: make(chan struct{}),
	}, nil
}

// job is a request inside the engine. The engine goroutine writes its output; the
// requesting goroutine reads it through take.
type job struct {
	req       *Request
	prompt    []llama.Token // to decode: Prompt, or the text after Media
	promptLen int           // all prompt tokens, Media's included
	sampler   *llama.Sampler
	text      *llama.TextStream
	maxTokens int
	onDevice  bool

	// Written by the engine goroutine only.
	generated     int
	drafted       int
	draftAccepted int
	cachedTokens  int
	queuedAt      time.Time
	admittedAt    time.Time
	firstToken    time.Time

	mu       sync.Mutex
	out      []Delta
	done     bool
	reason   llama.FinishReason
	err      error
	notify   chan struct{} // cap 1: output or the end is ready
	ended    chan struct{} // closed when the engine has let go of the job
	stopped  atomic.Bool
	stopErr  error // guarded by mu
	stopWhy  error
	finished atomic.Bool
}

// send queues output for the requester. Tokens of consecutive unread deltas merge.
func (j *job) send(d Delta) {
	if d.Text == "" && len(d.Tokens) == 0 {
		return
	}
	j.mu.Lock()
	if n := len(j.out); n > 0 {
		j.out[n-1].Text += d.Text
		j.out[n-1].Tokens = append(j.out[n-1].Tokens, d.Tokens...)
		j.out[n-1].Logprobs = append(j.out[n-1].Logprobs, d.Logprobs...)
	} else {
		j.out = append(j.out, d)
	}
	j.mu.Unlock()
	j.wake()
}

func (j *job) wake() {
	select {
	case j.notify <- struct{}{}:
	default:
	}
}

// take returns the queued output and whether the job has ended.
func (j *job) take() ([]Delta, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := j.out
	j.out = nil
	return out, j.done
}

// finish ends the job (once).
func (j *job) finish(reason llama.FinishReason, err error) {
	if j.finished.Swap(true) {
		return
	}
	j.mu.Lock()
	j.done, j.reason, j.err = true, reason, err
	j.mu.Unlock()
	close(j.ended)
	j.wake()
}

// cancel asks the engine to end the job; sentinel and cause make its error (nil:
// the requester stopped reading).
func (j *job) cancel(sentinel, cause error) {
	j.mu.Lock()
	if !j.stopped.Load() {
		j.stopErr, j.stopWhy = sentinel, cause
	}
	j.mu.Unlock()
	j.stopped.Store(true)
}

func (j *job) cancelled() bool { return j.stopped.Load() }

func (j *job) cancelCause() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.stopErr == nil {
		return nil
	}
	return fmt.Errorf("%w: %w", j.stopErr, j.stopWhy)
}

func (j *job) result() Result {
	j.mu.Lock()
	defer j.mu.Unlock()
	r := Result{
		FinishReason: j.reason, Err: j.err,
		PromptTokens: j.promptLen, CachedTokens: j.cachedTokens, GeneratedTokens: j.generated,
		DeviceSampling: j.onDevice, Drafted: j.drafted, DraftAccepted: j.draftAccepted,
	}
	if !j.admittedAt.IsZero() {
		r.Queued = j.admittedAt.Sub(j.queuedAt)
		if !j.firstToken.IsZero() {
			r.TimeToFirst = j.firstToken.Sub(j.admittedAt)
		}
	}
	if j.reason == llama.FinishCancelled && j.err == nil {
		r.FinishReason = llama.FinishStop // the requester stopped ranging
	}
	return r
}

package llama

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"slices"
	"strings"
	"time"
)

// OverflowPolicy says what a ChatSession does when the conversation no longer fits
// the context.
type OverflowPolicy int

const (
	// OverflowError fails the turn with an error matching ErrContextFull and leaves the
	// history as it was (the default).
	OverflowError OverflowPolicy = iota
	// OverflowDropOldest drops the oldest turns (a user message and the replies and
	// tool results that follow it), keeping the system prompt and the newest turn, until
	// the conversation fits. Dropped messages are gone from the history.
	OverflowDropOldest
)

// ChatSessionParams configures NewChatSession. The zero value (or nil) chats with the
// model's own template, default sampling and no tools, in sequence 0.
type ChatSessionParams struct {
	// Template renders the conversation; nil: the model's template (owned by the session).
	Template *ChatTemplate
	// System is the system prompt ("" for none).
	System string
	// Tools the model may call, and whether it must.
	Tools             []Tool
	ToolChoice        ToolChoice
	ParallelToolCalls bool
	// Reasoning and DisableThinking are as in ChatRequest.
	Reasoning       ReasoningFormat
	DisableThinking bool
	TemplateArgs    map[string]any
	// Sampling configures the sampler of each reply (nil: DefaultSamplingParams); a tool
	// call grammar of the template is added to it.
	Sampling *SamplingParams
	// MaxTokens caps each reply (0: until end of generation or a full context).
	MaxTokens int
	// Seq is the KV cache sequence the session uses.
	Seq SeqID
	// Overflow is the policy for a conversation that outgrows the context.
	Overflow OverflowPolicy
	// Draft and DraftMax decode replies speculatively, as in GenerateParams; the
	// drafter sees the whole conversation.
	Draft    Drafter
	DraftMax int
	// Projector, for a model that takes images or audio, feeds the media parts of the
	// messages to the model. A conversation with media is evaluated whole at each turn
	// (its cache is not reused), and its length is estimated from its text.
	Projector *Projector
}

// TurnResult describes the last reply of a ChatSession.
type TurnResult struct {
	Message Message // the reply, parsed (content, reasoning, tool calls)
	Text    string  // the reply as the model wrote it
	// PromptTokens is the length of the rendered conversation; PromptTokensReused of it
	// were already in the KV cache from earlier turns and PromptTokensDecoded were decoded.
	PromptTokens        int
	PromptTokensReused  int
	PromptTokensDecoded int
	GeneratedTokens     int
	// DroppedMessages counts messages dropped by OverflowDropOldest for this turn.
	DroppedMessages int
	FinishReason    FinishReason
	Prompt          time.Duration // prompt processing
	Generation      time.Duration
	// Drafted and DraftAccepted count speculative tokens (ChatSessionParams.Draft).
	Drafted, DraftAccepted int
}

// ChatDelta is one step of a streamed reply.
type ChatDelta struct {
	// Text is the new raw text (complete UTF-8 characters) as the model wrote it,
	// including tool-call and reasoning markup.
	Text string
	// Content and Reasoning are the new parsed content and reasoning text; both are
	// empty while the text is markup (e.g. a tool call being written).
	Content   string
	Reasoning string
}

// ChatSession is a conversation with a model that keeps its history and the KV cache of
// one sequence between turns: each turn renders the whole conversation with the chat
// template, keeps the longest prefix of tokens the cache already holds and decodes only
// the rest. A ChatSession serves one goroutine at a time; its Context must not be used
// for other work on the same sequence in between turns (other sequences are fine).
type ChatSession struct {
	c        *Context
	model    *Model
	tmpl     *ChatTemplate
	ownTmpl  bool
	p        ChatSessionParams
	sampling SamplingParams
	history  []Message
	cached   []Token // what sequence p.Seq of the cache holds, from position 0
	// mediaCached: the cache holds a conversation with media, which cached does not describe
	mediaCached bool
	last        TurnResult
	closed      bool
}

// NewChatSession starts a conversation on context c.
func NewChatSession(c *Context, p *ChatSessionParams) (*ChatSession, error) {
	if c == nil {
		return nil, fmt.Errorf("%w: a chat session needs a Context", ErrInvalidParams)
	}
	s := &ChatSession{c: c, model: c.Model()}
	if p != nil {
		s.p = *p
	}
	if err := c.checkSeq(s.p.Seq); err != nil {
		return nil, err
	}
	if s.p.MaxTokens < 0 {
		return nil, invalidParam("MaxTokens %d must be >= 0", s.p.MaxTokens)
	}
	switch s.p.Overflow {
	case OverflowError, OverflowDropOldest:
	default:
		return nil, invalidParam("unknown overflow policy %d", s.p.Overflow)
	}
	s.sampling = DefaultSamplingParams()
	if s.p.Sampling != nil {
		s.sampling = *s.p.Sampling
	}
	if _, err := s.sampling.Stages(); err != nil {
		return nil, err
	}
	// Validate tools and options once, with an empty conversation.
	if err := s.request(nil).check(); err != nil {
		return nil, err
	}
	s.tmpl = s.p.Template
	if s.tmpl == nil {
		t, err := NewChatTemplate(s.model, nil)
		if err != nil {
			return nil, err
		}
		s.tmpl, s.ownTmpl = t, true
	}
	s.SetSystem(s.p.System)
	// The session owns the sequence: start from an empty cache.
	if _, err := c.MemorySeqRemove(s.p.Seq, -1, -1); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Close frees what the session owns (its template, when it made it); the Context stays
// open. Calling it again is a no-op.
func (s *ChatSession) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	if s.ownTmpl {
		return s.tmpl.Close()
	}
	return nil
}

// Messages returns a copy of the conversation, system prompt first when there is one.
func (s *ChatSession) Messages() []Message { return slices.Clone(s.history) }

// System returns the system prompt.
func (s *ChatSession) System() string {
	if len(s.history) > 0 && s.history[0].Role == RoleSystem {
		return s.history[0].Text()
	}
	return ""
}

// SetSystem replaces the system prompt ("" removes it); the rest of the history stays.
func (s *ChatSession) SetSystem(text string) {
	hasSystem := len(s.history) > 0 && s.history[0].Role == RoleSystem
	switch {
	case text == "" && hasSystem:
		s.history = s.history[1:]
	case text == "":
	case hasSystem:
		s.history[0] = Message{Role: RoleSystem, Content: text}
	default:
		s.history = append([]Message{{Role: RoleSystem, Content: text}}, s.history...)
	}
}

// Reset forgets the conversation except the system prompt. The cache keeps what can be
// reused (the system prompt's tokens).
func (s *ChatSession) Reset() {
	sys := s.System()
	s.history = nil
	s.SetSystem(sys)
	s.last = TurnResult{}
}

// Append adds messages to the history without generating (e.g. tool results before
// Respond). They are checked as ChatTemplate.Apply checks them.
func (s *ChatSession) Append(msgs ...Message) error {
	req := ChatRequest{Messages: msgs}
	if err := req.check(); err != nil {
		return err
	}
	s.history = append(s.history, msgs...)
	return nil
}

// Sampling returns the sampling parameters of the next replies.
func (s *ChatSession) Sampling() SamplingParams { return s.sampling }

// SetSampling changes the sampling of the next replies (nil: DefaultSamplingParams);
// invalid parameters are refused and the old ones stay.
func (s *ChatSession) SetSampling(p *SamplingParams) error {
	next := DefaultSamplingParams()
	if p != nil {
		next = *p
	}
	if _, err := next.Stages(); err != nil {
		return err
	}
	s.sampling = next
	return nil
}

// SetMaxTokens changes the cap on each reply (0: until end of generation or a full context).
func (s *ChatSession) SetMaxTokens(n int) error {
	if n < 0 {
		return invalidParam("MaxTokens %d must be >= 0", n)
	}
	s.p.MaxTokens = n
	return nil
}

// SetThinking asks a reasoning model's template to think (the default) or not in the next
// replies (ChatSessionParams.DisableThinking).
func (s *ChatSession) SetThinking(on bool) { s.p.DisableThinking = !on }

// LastTurn describes the last reply (zero before the first).
func (s *ChatSession) LastTurn() TurnResult { return s.last }

// Say sends a user message and streams the reply: Send with a RoleUser message.
func (s *ChatSession) Say(ctx context.Context, text string) iter.Seq2[ChatDelta, error] {
	return s.Send(ctx, Message{Role: RoleUser, Content: text})
}

// Send appends m to the history and streams the assistant's reply; the parsed reply is
// appended to the history when the iteration ends (see Respond).
func (s *ChatSession) Send(ctx context.Context, m Message) iter.Seq2[ChatDelta, error] {
	return func(yield func(ChatDelta, error) bool) {
		if err := s.Append(m); err != nil {
			yield(ChatDelta{}, err)
			return
		}
		s.respond(ctx, yield, 1)
	}
}

// Respond streams the assistant's reply to the history as it is. Ranging over it runs
// the generation, once. When it ends the parsed reply is appended to the history and
// LastTurn describes it. A reply stopped early (the caller stopped ranging, or ctx was
// cancelled: the error then matches ErrAborted) is kept as far as it got; a turn that
// fails otherwise leaves the history as it was before Send. Errors come as the last value.
func (s *ChatSession) Respond(ctx context.Context) iter.Seq2[ChatDelta, error] {
	return func(yield func(ChatDelta, error) bool) { s.respond(ctx, yield, 0) }
}

func (s *ChatSession) request(msgs []Message) *ChatRequest {
	return &ChatRequest{
		Messages: msgs, Tools: s.p.Tools, ToolChoice: s.p.ToolChoice, ParallelToolCalls: s.p.ParallelToolCalls,
		Reasoning: s.p.Reasoning, DisableThinking: s.p.DisableThinking, TemplateArgs: s.p.TemplateArgs,
	}
}

// respond runs one turn; added is how many messages the caller appended for it (removed
// again when the turn fails).
func (s *ChatSession) respond(ctx context.Context, yield func(ChatDelta, error) bool, added int) {
	before := len(s.history) - added
	fail := func(err error) {
		s.history = s.history[:before]
		yield(ChatDelta{}, err)
	}
	if s.closed {
		fail(ErrClosed)
		return
	}
	s.last = TurnResult{}
	prompt, tokens, dropped, err := s.render()
	if err != nil {
		fail(err)
		return
	}
	seq := s.p.Seq
	media := media(s.history)
	if len(media) > 0 && s.p.Projector == nil {
		fail(fmt.Errorf("%w: the conversation has media and the session no Projector", ErrChat))
		return
	}
	if len(media) > 0 || s.mediaCached {
		s.cached = nil // the cache holds media embeddings, which tokens do not describe
		if _, err := s.c.MemorySeqRemove(seq, -1, -1); err != nil {
			fail(err)
			return
		}
		s.mediaCached = false
	}
	n := s.reusable(tokens)
	if n < len(s.cached) {
		if ok, err := s.c.MemorySeqRemove(seq, Pos(n), -1); err != nil {
			fail(err)
			return
		} else if !ok {
			n = 0
			if _, err := s.c.MemorySeqRemove(seq, -1, -1); err != nil {
				fail(err)
				return
			}
		}
	}
	if lo, hi, err := s.c.MemorySeqPosRange(seq); err != nil {
		fail(err)
		return
	} else if n > 0 && (lo != 0 || int(hi) != n-1) { // e.g. a sliding-window cache forgot the start
		n = 0
		if _, err := s.c.MemorySeqRemove(seq, -1, -1); err != nil {
			fail(err)
			return
		}
	}
	s.cached = tokens[:n:n]

	sampler, err := prompt.NewSampler(s.model, &s.sampling)
	if err != nil {
		fail(err)
		return
	}
	defer sampler.Close()
	parser, err := NewChatParser(prompt.Format)
	if err != nil {
		fail(err)
		return
	}
	defer parser.Close()
	special := map[Token]bool{}
	for _, tok := range prompt.PreservedTokenIDs(s.model) {
		special[tok] = true
	}

	var (
		text    []byte
		sent    int
		gen     []Token
		prev    Message
		genErr  error
		stopped bool
	)
	opts := &GenerateParams{MaxTokens: s.p.MaxTokens, Stop: prompt.Stop, Seq: seq,
		Draft: s.p.Draft, DraftMax: s.p.DraftMax, history: tokens[:n]}
	input := tokens[n:]
	if len(media) > 0 {
		mp, err := s.p.Projector.Prompt(prompt.Prompt, media, true)
		if err == nil && opts.Draft != nil {
			mp.Close()
			err = invalidParam("speculative decoding of a conversation with media is not supported")
		}
		if err != nil {
			fail(err)
			return
		}
		defer mp.Close()
		opts.media, input = mp, mp.lastText
		s.mediaCached = true
	}
	for g, err := range s.c.Generate(ctx, input, sampler, opts) {
		if err != nil {
			genErr = err
			break
		}
		gen = append(gen, g.Token)
		text, err = s.model.AppendTokenPiece(text, g.Token, special[g.Token])
		if err != nil {
			genErr = err
			break
		}
		complete := completeUTF8(text)
		if complete == sent {
			continue
		}
		d := ChatDelta{Text: string(text[sent:complete])}
		sent = complete
		if m, err := parser.Parse(string(text[:complete]), true); err == nil {
			d.Content = strings.TrimPrefix(m.Content, prev.Content)
			if !strings.HasPrefix(m.Content, prev.Content) {
				d.Content = ""
			}
			d.Reasoning = strings.TrimPrefix(m.ReasoningContent, prev.ReasoningContent)
			if !strings.HasPrefix(m.ReasoningContent, prev.ReasoningContent) {
				d.Reasoning = ""
			}
			prev = m
		}
		if !yield(d, nil) {
			stopped = true
			break
		}
	}
	if len(media) == 0 {
		s.syncCache(tokens[:n], tokens[n:], gen)
	}
	gres := s.c.LastGeneration()
	s.last = TurnResult{
		Text: strings.ToValidUTF8(string(text), "\uFFFD"), PromptTokens: len(tokens), PromptTokensReused: n,
		PromptTokensDecoded: gres.PromptTokens, GeneratedTokens: gres.GeneratedTokens, DroppedMessages: dropped,
		FinishReason: gres.FinishReason, Prompt: gres.Prompt, Generation: gres.Generation,
		Drafted: gres.Drafted, DraftAccepted: gres.DraftAccepted,
	}
	aborted := errors.Is(genErr, ErrAborted)
	if genErr != nil && (!aborted || len(gen) == 0) {
		s.last.Message = Message{}
		fail(genErr)
		return
	}
	partial := aborted || stopped
	msg, err := parser.Parse(s.last.Text, partial)
	if err != nil {
		msg = Message{Role: RoleAssistant, Content: s.last.Text}
	}
	s.last.Message = msg
	s.history = append(s.history, msg)
	if sent < len(text) && !stopped { // an incomplete character at the very end
		yield(ChatDelta{Text: strings.ToValidUTF8(string(text[sent:]), "\uFFFD")}, nil)
	}
	if genErr != nil {
		yield(ChatDelta{}, genErr)
	}
}

// render renders the history with the template, dropping old turns when the policy
// allows and the prompt does not fit. It returns the prompt, its tokens and how many
// messages were dropped.
func (s *ChatSession) render() (*ChatPrompt, []Token, int, error) {
	room := s.c.NCtx() / max(1, s.c.NSeqMax())
	reserve := s.p.MaxTokens
	if reserve == 0 {
		reserve = 256
	}
	reserve = max(1, min(reserve, room/4))
	dropped := 0
	for {
		prompt, err := s.tmpl.Apply(s.request(s.history))
		if err != nil {
			return nil, nil, dropped, err
		}
		tokens, err := s.model.Tokenize(prompt.Prompt, AddSpecial|ParseSpecial)
		if err != nil {
			return nil, nil, dropped, err
		}
		if len(tokens)+reserve <= room {
			return prompt, tokens, dropped, nil
		}
		if s.p.Overflow == OverflowDropOldest {
			if k := s.dropOldestTurn(); k > 0 {
				dropped += k
				continue
			}
		}
		return nil, nil, dropped, fmt.Errorf("%w: the conversation needs %d tokens plus %d for the reply, the context holds %d",
			ErrContextFull, len(tokens), reserve, room)
	}
}

// dropOldestTurn removes the oldest turn after the system prompt, unless it is the last
// one; it returns how many messages it removed.
func (s *ChatSession) dropOldestTurn() int {
	start := 0
	if len(s.history) > 0 && s.history[0].Role == RoleSystem {
		start = 1
	}
	end := start + 1
	for end < len(s.history) && s.history[end].Role != RoleUser {
		end++
	}
	if end >= len(s.history) { // nothing after this turn: keep it
		return 0
	}
	s.history = slices.Delete(s.history, start, end)
	return end - start
}

// reusable is how many leading tokens of a new prompt the cache holds already; at least
// one token is left to decode (the reply's first logits come from it).
func (s *ChatSession) reusable(tokens []Token) int {
	n := 0
	for n < len(s.cached) && n < len(tokens) && s.cached[n] == tokens[n] {
		n++
	}
	return min(n, len(tokens)-1)
}

// syncCache records what the sequence holds after a generation: the reused prefix, the
// decoded prompt and the generated tokens, as far as the cache has them (Generate
// leaves some tokens undecoded, e.g. the last one at the length limit). Anything the
// cache holds beyond what is known (tokens decoded before a stop string) is removed.
func (s *ChatSession) syncCache(reused, decoded, gen []Token) {
	known := slices.Concat(reused, decoded, gen)
	_, hi, err := s.c.MemorySeqPosRange(s.p.Seq)
	if err != nil {
		s.cached = nil
		return
	}
	held := int(hi) + 1
	if held > len(known) {
		if _, err := s.c.MemorySeqRemove(s.p.Seq, Pos(len(known)), -1); err != nil {
			s.cached = nil
			return
		}
		held = len(known)
	}
	s.cached = known[:held]
}

// prefillGrammar feeds the generation prompt's tokens to the sampler's grammar, as
// llama.cpp's common sampler does for grammars that cover the whole reply.
func prefillGrammar(m *Model, s *Sampler, generationPrompt string) error {
	toks, err := m.Tokenize(generationPrompt, ParseSpecial)
	if err != nil {
		return err
	}
	for i, t := range toks {
		if i == 0 {
			if piece, err := m.TokenPiece(t, true); err == nil && len(piece) > 0 && isSpace(piece[0]) &&
				!isSpace(generationPrompt[0]) {
				continue // a space some tokenizers add before the first special token
			}
		}
		if err := s.Accept(t); err != nil {
			return fmt.Errorf("%w: the tool-call grammar does not accept the generation prompt: %w", ErrChat, err)
		}
	}
	return nil
}

func isSpace(b byte) bool { return b == ' ' || b == '\t' || b == '\n' || b == '\r' }

// sessionFile is the JSON part of a saved session. Version 2 is followed by a newline
// and StateBytes bytes of SeqState: the KV cache of the session's sequence, which holds
// Cached, the tokens it was decoded from.
type sessionFile struct {
	Version    int       `json:"version"`
	Messages   []Message `json:"messages"`
	Cached     []Token   `json:"cached,omitempty"`
	StateBytes int       `json:"state_bytes,omitempty"`
}

// Save writes the conversation (system prompt included) and the KV cache of its sequence:
// a line of JSON, {"version": 2, "messages": [...], "cached": [tokens], "state_bytes": n},
// with messages in OpenAI's chat format, then n bytes of the cache (Context.SeqState).
// After Load into a context of the same model the next turn decodes only its new
// message, not the conversation again.
func (s *ChatSession) Save(w io.Writer) error {
	if len(media(s.history)) > 0 {
		return fmt.Errorf("%w: a conversation with media cannot be saved (the file would not hold the media)", ErrChat)
	}
	f := sessionFile{Version: 2, Messages: s.history}
	var state []byte
	if len(s.cached) > 0 {
		var err error
		if state, err = s.c.SeqState(s.p.Seq); err != nil {
			return fmt.Errorf("%w: save session: %w", ErrChat, err)
		}
		f.Cached, f.StateBytes = s.cached, len(state)
	}
	head, err := json.Marshal(f)
	if err != nil {
		return err
	}
	if _, err := w.Write(append(head, '\n')); err != nil {
		return err
	}
	_, err = w.Write(state)
	return err
}

// Load replaces the conversation with one written by Save. A saved KV cache is restored
// into the session's sequence; without one (version 1 files: messages only) the next turn
// decodes what the cache does not hold. Invalid files, messages or caches (another model, too small a
// context: ErrInvalidState) are errors and leave the conversation unchanged; the
// sequence's cache is then empty.
func (s *ChatSession) Load(r io.Reader) error {
	dec := json.NewDecoder(r)
	var f sessionFile
	if err := dec.Decode(&f); err != nil {
		return fmt.Errorf("%w: load session: %v", ErrChat, err)
	}
	if f.Version != 1 && f.Version != 2 {
		return fmt.Errorf("%w: load session: unknown version %d", ErrChat, f.Version)
	}
	req := ChatRequest{Messages: f.Messages}
	if err := req.check(); err != nil {
		return err
	}
	if f.StateBytes < 0 || f.StateBytes > 0 && len(f.Cached) == 0 || len(f.Cached) > s.c.NCtx() {
		return fmt.Errorf("%w: load session: %d cached tokens with %d bytes of cache", ErrChat, len(f.Cached), f.StateBytes)
	}
	var state []byte
	if f.StateBytes > 0 {
		// The cache follows the JSON line; the decoder may have read into it already.
		rest := io.MultiReader(dec.Buffered(), r)
		var nl [1]byte
		if _, err := io.ReadFull(rest, nl[:]); err != nil || nl[0] != '\n' {
			return fmt.Errorf("%w: load session: no newline after the JSON line", ErrChat)
		}
		state = make([]byte, f.StateBytes)
		if _, err := io.ReadFull(rest, state); err != nil {
			return fmt.Errorf("%w: load session: cache: %w", ErrChat, err)
		}
		if _, err := s.model.stateData(stateSeq, state); err != nil {
			return fmt.Errorf("%w: load session: %w", ErrChat, err)
		}
	}
	if err := s.model.checkTokens(f.Cached); err != nil {
		return fmt.Errorf("%w: load session: %w", ErrChat, err)
	}
	if state != nil {
		s.cached = nil
		err := s.c.SetSeqState(s.p.Seq, state)
		if _, hi, perr := s.c.MemorySeqPosRange(s.p.Seq); err == nil && (perr != nil || int(hi)+1 != len(f.Cached)) {
			err = fmt.Errorf("the cache does not hold the %d cached tokens", len(f.Cached))
		}
		if err != nil {
			s.c.MemorySeqRemove(s.p.Seq, -1, -1)
			return fmt.Errorf("%w: load session: %w", ErrChat, err)
		}
		s.cached = f.Cached
	}
	s.history = f.Messages
	s.last = TurnResult{}
	return nil
}

package llama

/*
#include "shim.h"
*/
import "C"

import (
	"context"
	"fmt"
	"strings"
)

// Rerank scores how relevant each document is to the query with a reranking model
// (a cross-encoder with rank pooling, e.g. bge-reranker): one score per document, in
// the order given, higher is more relevant. The scores are the model's raw outputs
// (logits), as llama-server's /rerank returns them. Each (query, document) pair is one
// sequence, laid out by RerankTokens; pairs are packed into decodes as Embed packs texts.
//
// The context needs Embeddings and PoolingRank (the model's own for rerankers, or set
// ContextParams.Pooling). Errors as for Embed; an empty query or document is an error.
func (c *Context) Rerank(ctx context.Context, query string, docs []string) ([]float32, error) {
	if len(docs) == 0 {
		return nil, invalidParam("no documents to rerank")
	}
	inputs := make([][]Token, len(docs))
	for i, d := range docs {
		if d == "" {
			return nil, invalidParam("document %d is empty", i)
		}
		toks, err := c.model.RerankTokens(query, d)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		inputs[i] = toks
	}
	if err := c.enter(); err != nil {
		return nil, err
	}
	defer c.mu.Unlock()
	switch {
	case !c.embeddings:
		return nil, errNoEmbeddings
	case c.pooling != PoolingRank:
		return nil, invalidParam("reranking needs rank pooling, the context has %s (load a reranker or set ContextParams.Pooling = PoolingRank)", c.pooling)
	}
	nCls := max(1, int(C.llama_model_n_cls_out(c.model.ptr)))
	scores := make([]float32, len(docs))
	err := c.embedBatches(ctx, inputs, func(in, seq, _ int) error {
		v, err := c.pooledOutput(seq, nCls)
		if err != nil {
			return err
		}
		scores[in] = v[0]
		return nil
	})
	if err != nil {
		return nil, err
	}
	return scores, nil
}

// RerankTokens lays out a (query, document) pair as llama.cpp's server does for
// rerankers: with the model's "rerank" chat template (tokenizer.chat_template.rerank,
// {query} and {document} replaced) when it has one, otherwise
// [BOS] query [EOS] [SEP] document [EOS], each special token only where the vocabulary
// adds it on tokenization (EOS falls back to SEP for vocabularies without EOS, as
// BERT's). Special-token text inside query and document is not parsed.
func (m *Model) RerankTokens(query, doc string) ([]Token, error) {
	if query == "" {
		return nil, invalidParam("empty rerank query")
	}
	if tmpl, ok := m.info.Metadata["tokenizer.chat_template.rerank"]; ok && tmpl != "" {
		prompt := strings.NewReplacer("{query}", query, "{document}", doc).Replace(tmpl)
		return m.Tokenize(prompt, ParseSpecial)
	}
	v := m.vocabInfo
	if v.BOS == NoToken {
		return nil, invalidParam("the vocabulary has no BOS token and the model no rerank template: it cannot rerank")
	}
	eos := v.EOS
	if eos == NoToken {
		eos = v.SEP
	}
	var toks []Token
	if v.AddBOS {
		toks = append(toks, v.BOS)
	}
	toks, err := m.AppendTokens(toks, query, 0)
	if err != nil {
		return nil, err
	}
	if v.AddEOS && eos != NoToken {
		toks = append(toks, eos)
	}
	if v.AddSEP && v.SEP != NoToken {
		toks = append(toks, v.SEP)
	}
	if toks, err = m.AppendTokens(toks, doc, 0); err != nil {
		return nil, err
	}
	if v.AddEOS && eos != NoToken {
		toks = append(toks, eos)
	}
	return toks, nil
}

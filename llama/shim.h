// Glue that Go cannot express, the one C header Go includes. Its declarations are grouped by
// the file that defines them: shim.c (callback trampolines, the abort flag), shim_*.cpp
// (llama.cpp calls that can throw, upstream's C++ common/ code behind JSON-in/text-out
// functions) and device_*.cpp (sampling stages that run on the device, reading their rows).
//
// Every function of a .cpp file runs behind the exception barrier (barrier.h): no C++
// exception reaches Go. On an exception it returns its error value (an error code, NULL)
// and, when it has an err parameter, a malloc'ed message in *err (Go frees it). The few that
// cannot throw are LGO_NOEXCEPT instead, each with its reason where it is defined.
#ifndef LLAMAGO_SHIM_H
#define LLAMAGO_SHIM_H

#include "native.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include "llama.h"

#ifdef __cplusplus
#define LGO_NOEXCEPT noexcept
extern "C" {
#else
#define LGO_NOEXCEPT
#endif

// --- shim.c: callbacks and the abort flag. ---

// Abort state of one context, in C memory so ggml threads read it without touching Go.
// Each cancellable call arms a new epoch in current; cancelling it stores that epoch in
// aborted (a late cancel of an earlier call stores an older epoch and is ignored);
// Close stores -1. Go writes with sync/atomic, the callback reads with atomic loads.
typedef struct lgo_abort {
    int32_t current;
    int32_t aborted;
} lgo_abort;

bool lgo_abort_callback(void * data);
void lgo_context_params_set_abort(struct llama_context_params * p, lgo_abort * a);

// Model load progress: forwards to Go (handle is a cgo.Handle).
void lgo_model_params_set_progress(struct llama_model_params * p, uintptr_t handle);

// Logging: installs the trampoline; enabled=false drops messages in C without calling Go.
void lgo_log_install(void);
void lgo_log_enable(bool enabled);
// Identifies the calling thread: llama.cpp's error lines are matched to the call that
// caused them by the thread that logged them (log.go, captureErrors).
uintptr_t lgo_thread_key(void);

// --- compute_thread.c: the OS thread a context computes on the CPU, outside the Go
// runtime. lgo_compute_start starts it (NULL on failure); it writes a byte to done_fd when
// a job submitted with lgo_compute_submit is done: a decode or encode of batch by ctx (then
// lgo_compute_rc is their return code), or the Go function behind the cgo.Handle fn.
// lgo_compute_stop ends it once its job is done and frees it. ---
typedef struct lgo_compute_thread lgo_compute_thread;
enum { LGO_COMPUTE_DECODE, LGO_COMPUTE_ENCODE, LGO_COMPUTE_FN };
lgo_compute_thread * lgo_compute_start(int done_fd);
void    lgo_compute_submit(lgo_compute_thread * t, int kind, struct llama_context * ctx, struct llama_batch batch,
                           uintptr_t fn);
int32_t lgo_compute_rc(lgo_compute_thread * t);
void    lgo_compute_stop(lgo_compute_thread * t);

// --- shim_stages.cpp: building sampler chains. llama.cpp's llama_sampler_init_* are C++
// that allocates (DRY also tokenizes, which can throw): Go calls them only through here. ---

// The stages lgo_chain_add makes: llama_sampler_init_<kind> with the fields of lgo_stage
// named here as its arguments, in llama.h's order.
typedef enum {
    LGO_STAGE_GREEDY,      // greedy()
    LGO_STAGE_DIST,        // dist(seed)
    LGO_STAGE_TOP_K,       // top_k(i[0])
    LGO_STAGE_TOP_P,       // top_p(f[0], min_keep)
    LGO_STAGE_MIN_P,       // min_p(f[0], min_keep)
    LGO_STAGE_TYPICAL,     // typical(f[0], min_keep)
    LGO_STAGE_TEMP,        // temp(f[0])
    LGO_STAGE_TEMP_EXT,    // temp_ext(f[0], f[1], f[2])
    LGO_STAGE_XTC,         // xtc(f[0], f[1], min_keep, seed)
    LGO_STAGE_TOP_N_SIGMA, // top_n_sigma(f[0])
    LGO_STAGE_MIROSTAT,    // mirostat(n_vocab, seed, f[0], f[1], i[0])
    LGO_STAGE_MIROSTAT_V2, // mirostat_v2(seed, f[0], f[1])
    LGO_STAGE_ADAPTIVE_P,  // adaptive_p(f[0], f[1], seed)
    LGO_STAGE_PENALTIES,   // penalties(n_vocab, i[0], f[0], f[1], f[2])
    LGO_STAGE_DRY,         // dry(vocab, f[0], f[1], i[0], i[1], strs, n_strs)
    LGO_STAGE_LOGIT_BIAS,  // logit_bias(n_vocab, n_bias, bias)
    LGO_STAGE_INFILL,      // infill(vocab)
} lgo_stage_kind;

// One stage of a chain; the fields its kind does not name are ignored. Pointers point to C
// memory, which lgo_chain_add only reads.
typedef struct {
    lgo_stage_kind             kind;
    float                      f[3];
    int32_t                    i[2];
    uint32_t                   seed;
    int32_t                    n_vocab;
    size_t                     min_keep;
    const struct llama_vocab * vocab;
    const char **              strs;
    size_t                     n_strs;
    const llama_logit_bias *   bias;
    int32_t                    n_bias;
} lgo_stage;

// An empty chain; timings: it keeps the timings llama_perf_sampler reports. NULL with *err on failure.
struct llama_sampler * lgo_chain_new(bool timings, char ** err);
// Appends the stage s describes to chain, which owns it then. Returns 0, or -1 with *err.
int lgo_chain_add(struct llama_sampler * chain, const lgo_stage * s, char ** err);
// A chain holding only stage (which it then owns), with timings off, as llama_set_sampler
// wants; NULL (stage freed) on failure, NULL for a NULL stage.
struct llama_sampler * lgo_chain_of(struct llama_sampler * stage);
// llama_sampler_reset (a grammar's reset builds it again, which allocates): 0, or -1 with *err.
int lgo_sampler_reset(struct llama_sampler * s, char ** err);
// llama_set_sampler (attaching reserves device buffers): 1 attached, 0 refused, -1 with *err.
int lgo_set_sampler(struct llama_context * ctx, llama_seq_id seq, struct llama_sampler * chain, char ** err);
// Creates a (lazy, when patterns or tokens are given) grammar sampler; NULL with *err on failure.
struct llama_sampler * lgo_grammar_init(const struct llama_vocab * vocab, const char * grammar, const char * root,
                                        const char ** patterns, size_t n_patterns,
                                        const llama_token * tokens, size_t n_tokens, char ** err);

// --- device_group.h, device_argmax.cpp, device_topk.cpp: our device stages. A group per
// context holds what its stages share while a graph is built; it outlives its chains. A
// chain per attached sequence, attached with llama_set_sampler and freed
// (llama_sampler_free) only once detached. All NULL on failure. ---
typedef struct lgo_device_group lgo_device_group;
lgo_device_group *     lgo_device_group_new(void);
void                   lgo_device_group_free(lgo_device_group * g) LGO_NOEXCEPT;
// Greedy: one argmax over all output rows.
struct llama_sampler * lgo_argmax_chain_new(lgo_device_group * g);
// Top-k narrowing for a chain that starts with top-k k; NULL also when narrowing does not
// pay for this k and vocabulary. The row then holds the k chosen groups of `size`
// consecutive tokens (n_ids) and their logits followed by those of the tokens past
// groups*size (cand_logits, n_cand); lgo_sample_row expands them.
void                   lgo_topk_geometry(int32_t n_vocab, int32_t * groups, int32_t * size) LGO_NOEXCEPT;
struct llama_sampler * lgo_topk_chain_new(lgo_device_group * g, int32_t k, int32_t n_vocab);

// --- device_rows.cpp: reading what a decode left for its output rows, after one wait for
// the device (the one file built against llama.cpp's internal llama_context). ---

// What a row of a context's last decode offers a sampler: the token an on-device chain
// picked, or the candidates its leading stages left, or else the row's logits.
typedef struct {
    llama_token         token;  // LLAMA_TOKEN_NULL unless picked on the device
    const float *       logits; // all n_vocab logits; NULL when the device left candidates
    const llama_token * ids;    // the device's candidates, with probs and/or cand_logits
    const float *       probs;
    const float *       cand_logits;
    size_t              n_cand;
    size_t              n_ids;  // != n_cand: ids are the groups of a top-k narrowing (device_topk.cpp)
} lgo_row;

// Reads row idx of ctx's last decode (this touches the context: one thread at a time).
// device: a backend sampler is attached to some sequence of ctx (else only the logits are
// read). wait: wait for the device first (false: the caller did since the decode).
// Returns 0, or -1 with *err.
int lgo_row_get(struct llama_context * ctx, int32_t idx, bool device, bool wait, lgo_row * row, char ** err);

// The tokens on-device samplers picked for rows idx[0..n) of ctx's last decode, after one
// wait for the device: LLAMA_TOKEN_NULL where none was picked. The indices must be valid
// output rows. Returns 0, or -1 when llama.cpp failed.
int lgo_sampled_tokens(struct llama_context * ctx, const int32_t * idx, int32_t n, llama_token * out);

// The logits of row idx of ctx's last decode: NULL when a backend sampler picked the
// row's token or kept only candidates on the device (the buffer then holds stale values),
// or when llama.cpp failed. device as for lgo_row_get.
const float * lgo_logits_ith(struct llama_context * ctx, int32_t idx, bool device);

// --- shim_sampling.cpp: running a chain (and a grammar kept outside it) on a row. ---

// Samples a row with a chain plus an optional grammar kept outside the chain: the chain
// picks a token; when the grammar rejects it, the grammar is applied to all candidates
// and the chain picks again (llama.cpp's rejection sampling, cheap for large
// vocabularies). top_k > 0 says the chain starts with that top-k (or greedy, k = 1), so
// only those candidates are selected. cur is scratch space for n_vocab candidates. It
// touches only the samplers and cur: rows of one decode can be sampled in parallel with
// different samplers. Returns the token, or -1 with *err set.
llama_token lgo_sample_row(struct llama_sampler * chain, struct llama_sampler * grammar, const lgo_row * row,
                           llama_token_data * cur, int32_t n_vocab, int32_t top_k, char ** err);

// Accepts a token into the grammar (when not NULL) and the chain; a token the grammar
// forbids is refused (returns 1) instead of reaching llama.cpp's abort. -1 with *err on failure.
int lgo_accept(struct llama_sampler * chain, struct llama_sampler * grammar, llama_token token, char ** err);

// Applies the grammar (when not NULL) and the chain to arr without accepting anything.
// Returns 0, or -1 with *err.
int lgo_apply(struct llama_sampler * chain, struct llama_sampler * grammar, llama_token_data_array * arr, char ** err);

// --- shim_logprob.cpp: probabilities read off a row of logits. ---

// Top-n log-probabilities of a logits row: writes n ids and logprobs, sorted descending.
void lgo_top_logprobs(const float * logits, int32_t n_vocab, int32_t n, llama_token * ids, float * logprobs) LGO_NOEXCEPT;
// lgo_draft_pick returns the most likely token of logits; *sure says whether its
// probability is at least min_p (always true for min_p <= 0).
llama_token lgo_draft_pick(const float * logits, int32_t n_vocab, float min_p, bool * sure) LGO_NOEXCEPT;
float lgo_logprob(const float * logits, int32_t n_vocab, llama_token token) LGO_NOEXCEPT;

// --- shim_vocab.cpp: tokenization behind the barrier: llama_tokenize and llama_detokenize
// throw (e.g. std::out_of_range from a vocabulary without byte-fallback tokens). Same
// results as those; on an exception LGO_EXCEPTION with a malloc'ed message in *err. ---
#define LGO_EXCEPTION (INT32_MIN + 1)
int32_t lgo_tokenize(const struct llama_vocab * vocab, const char * text, int32_t text_len, llama_token * tokens,
                     int32_t n_tokens_max, bool add_special, bool parse_special, char ** err);
int32_t lgo_detokenize(const struct llama_vocab * vocab, const llama_token * tokens, int32_t n_tokens, char * text,
                       int32_t text_len_max, bool remove_special, bool unparse_special, char ** err);

// --- shim_fit.cpp: upstream's common/fit, which fits model and context parameters to the
// free device memory (llama-cli's "-ngl auto"). ---

// Fits mp and cp in place (tensor_split: llama_max_devices() floats; overrides:
// llama_max_tensor_buft_overrides() + 1 entries; margins: one per device, in bytes).
// Returns common_params_fit_status (0 fitted, 1 could not fit, 2 error), or -1 with a
// malloc'ed message in *err on an exception.
int lgo_fit(const char * path, struct llama_model_params * mp, struct llama_context_params * cp, float * tensor_split,
            struct llama_model_tensor_buft_override * overrides, size_t * margins, uint32_t n_ctx_min, char ** err);

// --- shim_mtmd.cpp: multimodal input through libmtmd. Pointers returned are owned by the
// caller (the matching _free); NULL (or -1) comes with a malloc'ed message in *err. ---

typedef struct {
    bool         vision, audio, mrope;
    int          sample_rate;
    const char * marker; // owned by the mtmd context
} lgo_mtmd_caps;

struct mtmd_context;
struct mtmd_bitmap;
struct mtmd_input_chunks;

struct mtmd_context * lgo_mtmd_init(const char * path, const struct llama_model * model, bool use_gpu, int n_threads,
                                    char ** err);
void                  lgo_mtmd_free(struct mtmd_context * ctx);
int                   lgo_mtmd_info(const struct mtmd_context * ctx, lgo_mtmd_caps * caps, char ** err);
// An image or audio clip decoded from the bytes of a file.
struct mtmd_bitmap * lgo_mtmd_bitmap_from_buf(const struct mtmd_context * ctx, const unsigned char * buf, size_t len,
                                              char ** err);
struct mtmd_bitmap * lgo_mtmd_bitmap_from_rgb(uint32_t nx, uint32_t ny, const unsigned char * rgb, char ** err);
int                  lgo_mtmd_bitmap_info(const struct mtmd_bitmap * b, uint32_t * nx, uint32_t * ny, bool * audio);
void                 lgo_mtmd_bitmap_free(struct mtmd_bitmap * b);
// Splits a prompt with one marker per bitmap into text and media chunks (special tokens parsed).
struct mtmd_input_chunks * lgo_mtmd_tokenize(const struct mtmd_context * ctx, const char * text, bool add_special,
                                             const struct mtmd_bitmap ** bitmaps, size_t n_bitmaps, char ** err);
// n_media: the tokens of the media chunks.
int lgo_mtmd_chunks_info(const struct mtmd_input_chunks * chunks, size_t * n_chunks, size_t * n_tokens, size_t * n_media);
// The tokens of the last chunk when it is text (owned by chunks), NULL otherwise.
const llama_token * lgo_mtmd_last_text(const struct mtmd_input_chunks * chunks, size_t * n);
// Evaluates the first n_chunks chunks into sequence seq of lctx from n_past on (media
// encoded by the projector, then decoded; text decoded): 0 and *new_n_past, or an error.
int  lgo_mtmd_eval(struct mtmd_context * ctx, struct llama_context * lctx, const struct mtmd_input_chunks * chunks,
                   size_t n_chunks, llama_pos n_past, llama_seq_id seq, int32_t n_batch, llama_pos * new_n_past,
                   char ** err);
void lgo_mtmd_chunks_free(struct mtmd_input_chunks * chunks);

// --- shim_chat.cpp: upstream's common/ (chat templates, output parsers, JSON schema to
// GBNF) behind JSON in/out. Each returns NULL (or -1) with a malloc'ed message in *err on
// failure; strings returned are malloc'ed (free them). Templates and parsers are opaque
// handles. ---

// JSON schema -> GBNF with upstream's converter. Returns a malloc'ed grammar or NULL with *err.
char * lgo_json_schema_to_grammar(const char * schema, char ** err);

// Parses a chat template: source, or the model's own when source is empty (model may be NULL
// when source is set). bos/eos give the template's bos_token/eos_token when model is NULL.
void * lgo_chat_templates_init(const struct llama_model * model, const char * source, const char * bos,
                               const char * eos, char ** err);
void lgo_chat_templates_free(void * tmpls);
// The template source in use (malloc'ed).
char * lgo_chat_templates_source(void * tmpls, char ** err);
// Renders a conversation: JSON request in, JSON prompt + generation parameters out.
char * lgo_chat_templates_apply(void * tmpls, const char * request, char ** err);
// Renders with llama.cpp's built-in (non-Jinja) templates: tmpl is a template name or source;
// messages is a JSON array of {role, content}. Returns the prompt.
char * lgo_chat_builtin_apply(const char * tmpl, const char * messages, bool add_ass, char ** err);
// Names of the built-in templates as a JSON array.
char * lgo_chat_builtin_templates(char ** err);
// An output parser for a format returned by lgo_chat_templates_apply (JSON in).
void * lgo_chat_parser_init(const char * format, char ** err);
void lgo_chat_parser_free(void * parser);
// Parses model output into a JSON assistant message; partial for text still growing.
char * lgo_chat_parser_parse(void * parser, const char * text, size_t len, bool partial, char ** err);

#ifdef __cplusplus
}
#endif

#endif

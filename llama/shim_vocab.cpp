// Tokenization behind the barrier: llama_tokenize and llama_detokenize throw, e.g.
// std::out_of_range for a character a vocabulary without byte-fallback tokens cannot encode.
#include "shim.h"

#include "barrier.h"

extern "C" {

int32_t lgo_tokenize(const struct llama_vocab * vocab, const char * text, int32_t text_len, llama_token * tokens,
                     int32_t n_tokens_max, bool add_special, bool parse_special, char ** err) {
    return lgo::catch_all(err, (int32_t) LGO_EXCEPTION, [&]() -> int32_t {
        return llama_tokenize(vocab, text, text_len, tokens, n_tokens_max, add_special, parse_special);
    });
}

int32_t lgo_detokenize(const struct llama_vocab * vocab, const llama_token * tokens, int32_t n_tokens, char * text,
                       int32_t text_len_max, bool remove_special, bool unparse_special, char ** err) {
    return lgo::catch_all(err, (int32_t) LGO_EXCEPTION, [&]() -> int32_t {
        return llama_detokenize(vocab, tokens, n_tokens, text, text_len_max, remove_special, unparse_special);
    });
}

}  // extern "C"

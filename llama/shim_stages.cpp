// Building sampler chains: llama.cpp's sampler and chain constructors are C++ that
// allocates (a grammar's also parses), so they run behind the barrier here.
#include "shim.h"

#include <memory>

#include "barrier.h"

namespace {

// sampler_ptr frees a sampler that nothing took over yet.
using sampler_ptr = std::unique_ptr<llama_sampler, decltype(&llama_sampler_free)>;

llama_sampler * new_chain(bool timings) {
    llama_sampler_chain_params params = llama_sampler_chain_default_params();
    params.no_perf                    = !timings;
    return llama_sampler_chain_init(params);
}

}  // namespace

extern "C" {

struct llama_sampler * lgo_chain_of(struct llama_sampler * stage) {
    return lgo::catch_all(nullptr, (llama_sampler *) nullptr, [&]() -> llama_sampler * {
        sampler_ptr s(stage, llama_sampler_free);
        if (!s) {
            return nullptr;
        }
        sampler_ptr chain(new_chain(false), llama_sampler_free);
        if (!chain) {
            return nullptr;
        }
        llama_sampler_chain_add(chain.get(), s.get());
        s.release();
        return chain.release();
    });
}

struct llama_sampler * lgo_grammar_init(const struct llama_vocab * vocab, const char * grammar, const char * root,
                                        const char ** patterns, size_t n_patterns,
                                        const llama_token * tokens, size_t n_tokens, char ** err) {
    return lgo::catch_all(err, (llama_sampler *) nullptr, [&]() -> llama_sampler * {
        llama_sampler * s = (n_patterns == 0 && n_tokens == 0)
            ? llama_sampler_init_grammar(vocab, grammar, root)
            : llama_sampler_init_grammar_lazy_patterns(vocab, grammar, root, patterns, n_patterns, tokens, n_tokens);
        if (s == nullptr) {
            lgo::set_err(err, "invalid grammar");
        }
        return s;
    });
}

}  // extern "C"

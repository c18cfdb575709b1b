// C++ glue: exception barriers around llama.cpp calls that can throw, and the one place
// that touches upstream's unstable common/ C++ API (JSON in, text out).
#include "shim.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <cmath>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "common/chat.h"
#include "common/json-schema-to-grammar.h"
#include "common/log.h"

namespace {

void set_err(char ** err, const char * msg) {
    if (err != nullptr) {
        *err = strdup(msg);
    }
}

// catch_all runs f, turning any exception into an error message and the code fail.
template <typename F, typename R>
R catch_all(char ** err, R fail, F && f) {
    try {
        return f();
    } catch (const std::exception & e) {
        set_err(err, e.what());
    } catch (...) {
        set_err(err, "unknown C++ exception");
    }
    return fail;
}

void fill_candidates(const float * logits, llama_token_data * cur, int32_t n_vocab) {
    for (llama_token id = 0; id < n_vocab; id++) {
        cur[id] = llama_token_data{id, logits[id], 0.0f};
    }
}

// top_k_candidates writes the k (<= n_vocab) largest logits to cur, sorted by logit
// descending, and returns k. It is what llama.cpp's top-k stage leaves, found in one
// pass over the logits instead of building and partially sorting all n_vocab
// candidates (3-4x faster for a 128k vocabulary): a min-heap holds the best k so far, and
// blocks of 32 logits none of which beats the heap's smallest are skipped with vector
// compares.
size_t top_k_candidates(const float * logits, int32_t n_vocab, int32_t k, llama_token_data * cur) {
    const auto by_logit = [](const llama_token_data & a, const llama_token_data & b) { return a.logit > b.logit; };
    k = std::min(k, n_vocab);
    for (llama_token id = 0; id < k; id++) {
        cur[id] = llama_token_data{id, logits[id], 0.0f};
    }
    std::make_heap(cur, cur + k, by_logit); // cur[0]: the smallest kept logit
    float      floor = cur[0].logit;
    const auto offer = [&](llama_token id) {
        if (logits[id] > floor) {
            std::pop_heap(cur, cur + k, by_logit);
            cur[k - 1] = llama_token_data{id, logits[id], 0.0f};
            std::push_heap(cur, cur + k, by_logit);
            floor = cur[0].logit;
        }
    };
    // GCC/Clang vector extensions: 4-wide compares, SSE2/NEON without extra flags.
    typedef float   f32x4 __attribute__((vector_size(16)));
    typedef int32_t i32x4 __attribute__((vector_size(16)));
    constexpr int32_t block = 32;
    int32_t           id    = k;
    for (; id + block <= n_vocab; id += block) {
        i32x4 above = {0, 0, 0, 0};
        for (int32_t j = 0; j < block; j += 4) {
            f32x4 v;
            std::memcpy(&v, logits + id + j, sizeof v);
            above |= v > floor;
        }
        if (above[0] | above[1] | above[2] | above[3]) {
            for (int32_t j = 0; j < block; j++) {
                offer(id + j);
            }
        }
    }
    for (; id < n_vocab; id++) {
        offer(id);
    }
    std::sort_heap(cur, cur + k, by_logit);
    return (size_t) k;
}

// expand_groups turns a row narrowed on the device (device_topk.cpp) into its top_k
// candidates in cur, sorted by logit descending, and returns how many; 0 when the row
// does not have the shape that narrowing gives.
size_t expand_groups(const lgo_row * row, int32_t n_vocab, int32_t top_k, llama_token_data * cur) {
    int32_t groups, size;
    lgo_topk_geometry(n_vocab, &groups, &size);
    const size_t in_groups = row->n_ids * size;
    if (top_k < 1 || row->cand_logits == nullptr || in_groups + n_vocab - (size_t) groups * size != row->n_cand) {
        return 0;
    }
    for (size_t i = 0; i < row->n_ids; i++) {
        if (row->ids[i] < 0 || row->ids[i] >= groups) {
            return 0;
        }
    }
    // The best top_k of the narrowed logits, then their token ids: the j-th logit of the
    // i-th group is token ids[i]*size + j; the tail's follow the groups.
    const size_t k = top_k_candidates(row->cand_logits, (int32_t) row->n_cand, top_k, cur);
    for (size_t i = 0; i < k; i++) {
        const size_t at = (size_t) cur[i].id;
        cur[i].id = at < in_groups ? row->ids[at / size] * size + (llama_token) (at % size)
                                   : groups * size + (llama_token) (at - in_groups);
    }
    return k;
}

bool grammar_allows(struct llama_sampler * grammar, llama_token token) {
    llama_token_data       one = {token, 1.0f, 0.0f};
    llama_token_data_array arr = {&one, 1, -1, false};
    llama_sampler_apply(grammar, &arr);
    return arr.data[0].logit != -INFINITY;
}

float log_sum_exp(const float * logits, int32_t n_vocab) noexcept {
    float max = -INFINITY;
    for (int32_t i = 0; i < n_vocab; i++) {
        max = std::max(max, logits[i]);
    }
    double sum = 0;
    for (int32_t i = 0; i < n_vocab; i++) {
        sum += std::exp((double) (logits[i] - max));
    }
    return max + (float) std::log(sum);
}

}  // namespace

extern "C" {

llama_token lgo_sample_row(struct llama_sampler * chain, struct llama_sampler * grammar, const lgo_row * row,
                           llama_token_data * cur, int32_t n_vocab, int32_t top_k, char ** err) {
    return catch_all(err, (llama_token) -1, [&]() -> llama_token {
        if (row->token != LLAMA_TOKEN_NULL) {
            llama_sampler_accept(chain, row->token);
            return row->token;
        }
        const float * logits = row->logits;
        size_t        n      = (size_t) n_vocab;
        if (logits == nullptr && row->n_ids != row->n_cand) {
            n = expand_groups(row, n_vocab, top_k, cur);
            if (n == 0) {
                set_err(err, "the row's candidates do not match the device's top-k narrowing");
                return -1;
            }
        } else if (logits == nullptr) {
            n = std::min(row->n_cand, n);
            for (size_t i = 0; i < n; i++) {
                cur[i] = llama_token_data{row->ids[i], row->cand_logits ? row->cand_logits[i] : 0.0f,
                                          row->probs ? row->probs[i] : 0.0f};
            }
        } else if (top_k > 0) {
            // The chain starts with top-k (or greedy): hand it the candidates that stage keeps.
            n = top_k_candidates(logits, n_vocab, top_k, cur);
        } else {
            fill_candidates(logits, cur, n_vocab);
        }
        llama_token_data_array arr = {cur, n, -1, top_k > 0 && (logits != nullptr || row->n_ids != row->n_cand)};
        llama_sampler_apply(chain, &arr);
        if (grammar != nullptr && logits != nullptr &&
            (arr.selected < 0 || !grammar_allows(grammar, arr.data[arr.selected].id))) {
            fill_candidates(logits, cur, n_vocab);
            arr = {cur, (size_t) n_vocab, -1, false};
            llama_sampler_apply(grammar, &arr);
            llama_sampler_apply(chain, &arr);
            if (arr.selected >= 0 && arr.data[arr.selected].logit == -INFINITY) {
                set_err(err, "the grammar allows no token here");
                return -1;
            }
        }
        if (arr.selected < 0 || (size_t) arr.selected >= arr.size) {
            set_err(err, "the sampler chain selected no token (add a final stage such as Greedy or Dist)");
            return -1;
        }
        const llama_token token = arr.data[arr.selected].id;
        if (grammar != nullptr) {
            llama_sampler_accept(grammar, token);
        }
        llama_sampler_accept(chain, token);
        return token;
    });
}

int lgo_accept(struct llama_sampler * chain, struct llama_sampler * grammar, llama_token token, char ** err) {
    return catch_all(err, -1, [&]() -> int {
        if (grammar != nullptr) {
            if (!grammar_allows(grammar, token)) {
                set_err(err, "the grammar forbids this token here");
                return 1;
            }
            llama_sampler_accept(grammar, token);
        }
        llama_sampler_accept(chain, token);
        return 0;
    });
}

int lgo_apply(struct llama_sampler * chain, struct llama_sampler * grammar, llama_token_data_array * arr, char ** err) {
    return catch_all(err, -1, [&]() -> int {
        if (grammar != nullptr) {
            llama_sampler_apply(grammar, arr);
        }
        llama_sampler_apply(chain, arr);
        return 0;
    });
}

struct llama_sampler * lgo_grammar_init(const struct llama_vocab * vocab, const char * grammar, const char * root,
                                        const char ** patterns, size_t n_patterns,
                                        const llama_token * tokens, size_t n_tokens, char ** err) {
    return catch_all(err, (struct llama_sampler *) nullptr, [&]() -> struct llama_sampler * {
        struct llama_sampler * s = (n_patterns == 0 && n_tokens == 0)
            ? llama_sampler_init_grammar(vocab, grammar, root)
            : llama_sampler_init_grammar_lazy_patterns(vocab, grammar, root, patterns, n_patterns, tokens, n_tokens);
        if (s == nullptr) {
            set_err(err, "invalid grammar");
        }
        return s;
    });
}

float lgo_logprob(const float * logits, int32_t n_vocab, llama_token token) {
    try {
        return logits[token] - log_sum_exp(logits, n_vocab);
    } catch (...) {
        return -INFINITY;
    }
}

void lgo_top_logprobs(const float * logits, int32_t n_vocab, int32_t n, llama_token * ids, float * logprobs) {
    const float lse = log_sum_exp(logits, n_vocab); // noexcept
    n = std::min(n, n_vocab);
    try {
        std::vector<llama_token> order(n_vocab);
        for (llama_token i = 0; i < n_vocab; i++) {
            order[i] = i;
        }
        std::partial_sort(order.begin(), order.begin() + n, order.end(),
                          [&](llama_token a, llama_token b) { return logits[a] > logits[b]; });
        for (int32_t i = 0; i < n; i++) {
            ids[i]      = order[i];
            logprobs[i] = logits[order[i]] - lse;
        }
    } catch (...) {
        // No memory for the index: select the top n in place, n passes over the logits.
        for (int32_t i = 0; i < n; i++) {
            llama_token best = -1;
            for (llama_token t = 0; t < n_vocab; t++) {
                const bool taken = std::find(ids, ids + i, t) != ids + i;
                if (!taken && (best < 0 || logits[t] > logits[best])) {
                    best = t;
                }
            }
            ids[i]      = best;
            logprobs[i] = logits[best] - lse;
        }
    }
}

llama_token lgo_draft_pick(const float * logits, int32_t n_vocab, float min_p, bool * sure) {
    llama_token best = 0;
    for (llama_token t = 1; t < n_vocab; t++) {
        if (logits[t] > logits[best]) {
            best = t;
        }
    }
    *sure = true;
    if (min_p > 0) {
        // p(best) >= min_p  <=>  sum of exp(l - l_best) <= 1 / min_p: stop once it is exceeded.
        const float limit = 1.0f / min_p;
        float sum = 0;
        for (int32_t t = 0; t < n_vocab && *sure; t++) {
            sum += expf(logits[t] - logits[best]);
            *sure = sum <= limit;
        }
    }
    return best;
}

int32_t lgo_tokenize(const struct llama_vocab * vocab, const char * text, int32_t text_len, llama_token * tokens,
                     int32_t n_tokens_max, bool add_special, bool parse_special, char ** err) {
    return catch_all(err, (int32_t) LGO_EXCEPTION, [&]() -> int32_t {
        return llama_tokenize(vocab, text, text_len, tokens, n_tokens_max, add_special, parse_special);
    });
}

int32_t lgo_detokenize(const struct llama_vocab * vocab, const llama_token * tokens, int32_t n_tokens, char * text,
                       int32_t text_len_max, bool remove_special, bool unparse_special, char ** err) {
    return catch_all(err, (int32_t) LGO_EXCEPTION, [&]() -> int32_t {
        return llama_detokenize(vocab, tokens, n_tokens, text, text_len_max, remove_special, unparse_special);
    });
}

char * lgo_json_schema_to_grammar(const char * schema, char ** err) {
    return catch_all(err, (char *) nullptr, [&]() -> char * {
        const std::string grammar = json_schema_to_grammar(common_json::parse(schema));
        return strdup(grammar.c_str());
    });
}

}  // extern "C"

// --- Chat templates and output parsers (common/chat.h) ---

namespace {

char * dup_string(const std::string & s) {
    char * out = (char *) malloc(s.size() + 1);
    if (out == nullptr) {
        throw std::bad_alloc();
    }
    memcpy(out, s.data(), s.size());
    out[s.size()] = '\0';
    return out;
}

common_chat_tool_choice tool_choice_from(const common_json & req) {
    const std::string choice = req.value("tool_choice", std::string("auto"));
    return common_chat_tool_choice_parse_oaicompat(choice.empty() ? "auto" : choice);
}

common_json string_array(const std::vector<std::string> & v) {
    common_json out = common_json::array();
    for (const auto & s : v) {
        out.push_back(s);
    }
    return out;
}

// common/'s own log prints straight to stderr from a worker thread, outside SetLogger's
// reach (llama.cpp's log goes to slog). Its chat messages repeat the errors we return,
// so it is silenced before the first chat call, as SetLogger(nil) silences llama.cpp.
void quiet_common_log() {
    static const bool done = [] {
        common_log_set_verbosity_thold(-1);
        return true;
    }();
    (void) done;
}

// A parser built once per generation: loading the PEG arena is the costly part, parses
// of a growing output reuse it.
struct chat_parser {
    common_chat_parser_params params;
};

}  // namespace

extern "C" {

void * lgo_chat_templates_init(const struct llama_model * model, const char * source, const char * bos,
                               const char * eos, char ** err) {
    return catch_all(err, (void *) nullptr, [&]() -> void * {
        quiet_common_log();
        const std::string src = source ? source : "";
        if (model == nullptr && src.empty()) {
            set_err(err, "a chat template needs a model or a template source");
            return nullptr;
        }
        common_chat_templates_ptr t = common_chat_templates_init(model, src, bos ? bos : "", eos ? eos : "");
        if (!t) {
            set_err(err, "could not initialise the chat template");
            return nullptr;
        }
        return t.release();
    });
}

void lgo_chat_templates_free(void * tmpls) {
    try {
        if (tmpls != nullptr) {
            common_chat_templates_free((common_chat_templates *) tmpls);
        }
    } catch (...) {
        // Nothing to report to: the memory is given up, the process lives.
    }
}

char * lgo_chat_templates_source(void * tmpls, char ** err) {
    return catch_all(err, (char *) nullptr, [&]() -> char * {
        return dup_string(common_chat_templates_source((const common_chat_templates *) tmpls));
    });
}

char * lgo_chat_templates_apply(void * tmpls, const char * request, char ** err) {
    return catch_all(err, (char *) nullptr, [&]() -> char * {
        const common_json req = common_json::parse(request);
        common_chat_templates_inputs in;
        in.messages = common_chat_msgs_parse_oaicompat(req.value("messages", common_json::array()));
        if (req.contains("tools") && !req.at("tools").is_null()) {
            in.tools = common_chat_tools_parse_oaicompat(req.at("tools"));
        }
        in.tool_choice            = tool_choice_from(req);
        in.parallel_tool_calls    = req.value("parallel_tool_calls", false);
        in.add_generation_prompt  = req.value("add_generation_prompt", true);
        in.continue_final_message = req.value("continue_final_message", false) ? COMMON_CHAT_CONTINUATION_AUTO
                                                                                : COMMON_CHAT_CONTINUATION_NONE;
        in.use_jinja              = req.value("use_jinja", true);
        in.reasoning_format       = common_reasoning_format_from_name(req.value("reasoning_format", std::string("auto")));
        in.enable_thinking        = req.value("enable_thinking", true);
        in.json_schema            = req.value("json_schema", std::string());
        in.grammar                = req.value("grammar", std::string());
        if (req.contains("now")) {
            const int64_t secs = req.at("now").get<int64_t>();
            in.now = std::chrono::system_clock::time_point(std::chrono::seconds(secs));
        }
        if (req.contains("kwargs")) {
            for (const auto & [key, val] : req.at("kwargs").items()) {
                in.chat_template_kwargs[key] = val.dump();
            }
        }

        const common_chat_params p = common_chat_templates_apply((const common_chat_templates *) tmpls, in);

        common_json triggers = common_json::array();
        for (const auto & t : p.grammar_triggers) {
            common_json jt = common_json::object();
            jt["type"]  = (int) t.type;
            jt["value"] = t.value;
            jt["token"] = (int) t.token;
            triggers.push_back(jt);
        }
        common_json out = common_json::object();
        out["prompt"]             = p.prompt;
        out["format"]             = (int) p.format;
        out["format_name"]        = std::string(common_chat_format_name(p.format));
        out["grammar"]            = p.grammar;
        out["grammar_lazy"]       = p.grammar_lazy;
        out["grammar_triggers"]   = triggers;
        out["generation_prompt"]  = p.generation_prompt;
        out["supports_thinking"]  = p.supports_thinking;
        out["thinking_start_tag"] = p.thinking_start_tag;
        out["thinking_end_tags"]  = string_array(p.thinking_end_tags);
        out["preserved_tokens"]   = string_array(p.preserved_tokens);
        out["additional_stops"]   = string_array(p.additional_stops);
        out["parser"]             = p.parser;
        return dup_string(out.dump());
    });
}

char * lgo_chat_builtin_apply(const char * tmpl, const char * messages, bool add_ass, char ** err) {
    return catch_all(err, (char *) nullptr, [&]() -> char * {
        const common_json msgs = common_json::parse(messages);
        std::vector<std::string> roles, contents;
        for (const auto & m : msgs) {
            roles.push_back(m.value("role", std::string()));
            contents.push_back(m.value("content", std::string()));
        }
        std::vector<llama_chat_message> chat;
        size_t size = 0;
        for (size_t i = 0; i < roles.size(); i++) {
            chat.push_back({ roles[i].c_str(), contents[i].c_str() });
            size += roles[i].size() + contents[i].size();
        }
        std::vector<char> buf(size * 2 + 256);
        int32_t n = llama_chat_apply_template(tmpl, chat.data(), chat.size(), add_ass, buf.data(), (int32_t) buf.size());
        if (n > (int32_t) buf.size()) {
            buf.resize(n);
            n = llama_chat_apply_template(tmpl, chat.data(), chat.size(), add_ass, buf.data(), (int32_t) buf.size());
        }
        if (n < 0 || n > (int32_t) buf.size()) {
            set_err(err, "the template is not one of llama.cpp's built-in chat templates");
            return nullptr;
        }
        return dup_string(std::string(buf.data(), n));
    });
}

char * lgo_chat_builtin_templates(char ** err) {
    return catch_all(err, (char *) nullptr, [&]() -> char * {
        const int32_t n = llama_chat_builtin_templates(nullptr, 0);
        std::vector<const char *> names(std::max(n, 0));
        llama_chat_builtin_templates(names.data(), names.size());
        common_json out = common_json::array();
        for (const char * name : names) {
            out.push_back(std::string(name));
        }
        return dup_string(out.dump());
    });
}

void * lgo_chat_parser_init(const char * format, char ** err) {
    return catch_all(err, (void *) nullptr, [&]() -> void * {
        quiet_common_log();
        const common_json f = common_json::parse(format);
        auto p = std::make_unique<chat_parser>();
        p->params.format               = (common_chat_format) f.value("format", 0);
        if (p->params.format < 0 || p->params.format >= COMMON_CHAT_FORMAT_COUNT) {
            set_err(err, "unknown chat format");
            return nullptr;
        }
        p->params.reasoning_format     = common_reasoning_format_from_name(f.value("reasoning_format", std::string("auto")));
        p->params.reasoning_in_content = f.value("reasoning_in_content", false);
        p->params.generation_prompt    = f.value("generation_prompt", std::string());
        p->params.parse_tool_calls     = f.value("parse_tool_calls", true);
        p->params.is_continuation      = f.value("continuation", false);
        const std::string arena        = f.value("parser", std::string());
        if (!arena.empty()) {
            p->params.parser.load(arena);
        }
        return p.release();
    });
}

void lgo_chat_parser_free(void * parser) {
    try {
        delete (chat_parser *) parser;
    } catch (...) {
        // As lgo_chat_templates_free.
    }
}

char * lgo_chat_parser_parse(void * parser, const char * text, size_t len, bool partial, char ** err) {
    return catch_all(err, (char *) nullptr, [&]() -> char * {
        const chat_parser *   p   = (const chat_parser *) parser;
        const common_chat_msg msg = common_chat_parse(std::string(text, len), partial, p->params);
        common_json out = common_json::object();
        out["content"]           = msg.content;
        out["reasoning_content"] = msg.reasoning_content;
        common_json calls = common_json::array();
        for (const auto & tc : msg.tool_calls) {
            common_json c = common_json::object();
            c["name"]      = tc.name;
            c["arguments"] = tc.arguments;
            c["id"]        = tc.id;
            calls.push_back(c);
        }
        out["tool_calls"] = calls;
        return dup_string(out.dump_safe());
    });
}

}  // extern "C"

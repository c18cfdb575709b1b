// The one place that touches upstream's unstable common/ C++ API: Jinja chat templates,
// chat output parsers and the JSON schema to GBNF converter, behind JSON-in/text-out
// functions (DESIGN.md, section 4), so upstream churn stays in this file.
#include "shim.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "barrier.h"
#include "common/chat.h"
#include "common/json-schema-to-grammar.h"
#include "common/log.h"

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

char * lgo_json_schema_to_grammar(const char * schema, char ** err) {
    return lgo::catch_all(err, (char *) nullptr, [&]() -> char * {
        return dup_string(json_schema_to_grammar(common_json::parse(schema)));
    });
}

void * lgo_chat_templates_init(const struct llama_model * model, const char * source, const char * bos,
                               const char * eos, char ** err) {
    return lgo::catch_all(err, (void *) nullptr, [&]() -> void * {
        quiet_common_log();
        const std::string src = source ? source : "";
        if (model == nullptr && src.empty()) {
            lgo::set_err(err, "a chat template needs a model or a template source");
            return nullptr;
        }
        common_chat_templates_ptr t = common_chat_templates_init(model, src, bos ? bos : "", eos ? eos : "");
        if (!t) {
            lgo::set_err(err, "could not initialise the chat template");
            return nullptr;
        }
        return t.release();
    });
}

// An exception while freeing has no one to report to: the memory is given up, the process lives.
void lgo_chat_templates_free(void * tmpls) {
    if (tmpls != nullptr) {
        lgo::catch_all(nullptr, [&] { common_chat_templates_free((common_chat_templates *) tmpls); });
    }
}

char * lgo_chat_templates_source(void * tmpls, char ** err) {
    return lgo::catch_all(err, (char *) nullptr, [&]() -> char * {
        return dup_string(common_chat_templates_source((const common_chat_templates *) tmpls));
    });
}

char * lgo_chat_templates_apply(void * tmpls, const char * request, char ** err) {
    return lgo::catch_all(err, (char *) nullptr, [&]() -> char * {
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
    return lgo::catch_all(err, (char *) nullptr, [&]() -> char * {
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
            lgo::set_err(err, "the template is not one of llama.cpp's built-in chat templates");
            return nullptr;
        }
        return dup_string(std::string(buf.data(), n));
    });
}

char * lgo_chat_builtin_templates(char ** err) {
    return lgo::catch_all(err, (char *) nullptr, [&]() -> char * {
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
    return lgo::catch_all(err, (void *) nullptr, [&]() -> void * {
        quiet_common_log();
        const common_json f = common_json::parse(format);
        auto p = std::make_unique<chat_parser>();
        p->params.format               = (common_chat_format) f.value("format", 0);
        if (p->params.format < 0 || p->params.format >= COMMON_CHAT_FORMAT_COUNT) {
            lgo::set_err(err, "unknown chat format");
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

// As lgo_chat_templates_free.
void lgo_chat_parser_free(void * parser) {
    lgo::catch_all(nullptr, [&] { delete (chat_parser *) parser; });
}

char * lgo_chat_parser_parse(void * parser, const char * text, size_t len, bool partial, char ** err) {
    return lgo::catch_all(err, (char *) nullptr, [&]() -> char * {
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

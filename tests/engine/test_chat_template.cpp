// The C++ DeepSeek chat templates (engine/chat_template.h) held to jinja2's rendering of the template texts on
// every conversation of golden/chat.jsonl (tests/tools/make_chat_goldens.py): the same text, or an error where
// jinja2 raised one. Also: the templates are recognised from the tokenizer configs, unknown ones refused, and a
// rendered prompt tokenizes with its special tokens as single ids.
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "engine/chat_template.h"
#include "engine/tokenizer.h"
#include "runtime/error.h"
#include "runtime/json.h"

namespace mlarun {
namespace {

const std::string kDir = std::string(MLARUN_TEST_DATA_DIR) + "/tokenizers";
const std::string kBos = "<｜begin▁of▁sentence｜>", kEos = "<｜end▁of▁sentence｜>";

TEST(ChatTemplate, EqualsJinja2OnEveryGoldenConversation) {
  std::ifstream in(kDir + "/golden/chat.jsonl");
  ASSERT_TRUE(in.good());
  int rows = 0, refused = 0, bad = 0;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    json::Value row = json::parse(line, "chat.jsonl:" + std::to_string(n));
    ChatFormat f = row["template"] == "v2" ? ChatFormat::DeepSeekV2 : ChatFormat::DeepSeekV3;
    ++rows;
    try {
      std::string got = render_chat(f, row["messages"], row["add_generation_prompt"].get<bool>(), kBos, kEos);
      if (json::find(row, "error")) {
        if (++bad <= 5) ADD_FAILURE() << "line " << n << ": jinja2 refused it, mlarun rendered " << got;
      } else if (got != row["text"].get<std::string>()) {
        if (++bad <= 5)
          ADD_FAILURE() << "line " << n << " " << line << "\n  mlarun: " << json::dump(json::Value(got));
      }
    } catch (const Error& e) {
      if (!json::find(row, "error") && ++bad <= 5) ADD_FAILURE() << "line " << n << ": " << e.what();
      ++refused;
    }
  }
  EXPECT_EQ(bad, 0);
  EXPECT_GE(rows, 1000);
  std::printf("%d conversations rendered as jinja2 does (%d refused by both)\n", rows, refused);
}

TEST(ChatTemplate, RecognisesTheTokenizersTemplates) {
  Tokenizer v2 = Tokenizer::load(kDir + "/v2-tiny"), v3 = Tokenizer::load(kDir + "/v3-tiny");
  EXPECT_EQ(chat_format_of(v2.chat_template()), ChatFormat::DeepSeekV2);
  EXPECT_EQ(chat_format_of(v3.chat_template()), ChatFormat::DeepSeekV3);
  EXPECT_THROW(chat_format_of("{{ messages }}"), Error);
  EXPECT_THROW(chat_format_of(v3.chat_template() + " "), Error);  // exact text only
  EXPECT_THROW(chat_format_of(""), Error);
}

TEST(ChatTemplate, RenderedPromptTokenizes) {
  Tokenizer tok = Tokenizer::load(kDir + "/v3-tiny");
  json::Value messages = json::Value::array({{{"role", "system"}, {"content", "Be brief."}},
                                             {{"role", "user"}, {"content", "Hi"}},
                                             {{"role", "assistant"}, {"content", "<think>x</think>Hello"}},
                                             {{"role", "user"}, {"content", "2+2?"}}});
  std::string text = apply_chat_template(tok, messages, true);
  EXPECT_EQ(text, kBos + "Be brief.<｜User｜>Hi<｜Assistant｜>Hello" + kEos + "<｜User｜>2+2?<｜Assistant｜>");
  std::vector<int32_t> ids = tok.encode(text);
  EXPECT_EQ(ids.front(), 0);
  EXPECT_EQ(ids.back(), *tok.token_to_id("<｜Assistant｜>"));
  EXPECT_EQ(tok.decode(ids), text);
}

TEST(ChatTemplate, ErrorsNameTheMessage) {
  json::Value messages = json::Value::array({{{"role", "user"}, {"content", "a"}}, {{"role", "user"}, {"content", nullptr}}});
  try {
    render_chat(ChatFormat::DeepSeekV3, messages, false, kBos, kEos);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("messages[1].content is null"), std::string::npos) << e.what();
  }
  EXPECT_THROW(render_chat(ChatFormat::DeepSeekV2, json::Value::object(), false, kBos, kEos), Error);
}

}  // namespace
}  // namespace mlarun

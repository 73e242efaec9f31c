// The strict JSON parser: types kept apart, duplicates and bad UTF-8 rejected, errors carry the source name.
#include <gtest/gtest.h>

#include "runtime/error.h"
#include "runtime/json.h"

using namespace mlarun;

static std::string error_of(const std::string& text) {
  try {
    json::parse(text, "test.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Json, ParsesTypes) {
  json::Value v = json::parse(R"({"a": 1, "b": 2.5, "c": "x\u00e9", "d": [true, null], "e": {"f": -3e2}})", "t");
  EXPECT_TRUE(v.find("a")->is_int());
  EXPECT_EQ(v.find("a")->as_int(), 1);
  EXPECT_FALSE(v.find("b")->is_int());
  EXPECT_DOUBLE_EQ(v.find("b")->as_double(), 2.5);
  EXPECT_EQ(v.find("c")->as_string(), "x\xc3\xa9");
  EXPECT_TRUE(v.find("d")->items()[1].is_null());
  EXPECT_DOUBLE_EQ(v.find("e")->find("f")->as_double(), -300.0);
  EXPECT_EQ(v.find("zz"), nullptr);
}

TEST(Json, RejectsMalformedText) {
  EXPECT_NE(error_of(R"({"a": 1, "a": 2})").find("duplicate key \"a\""), std::string::npos);
  EXPECT_NE(error_of("{\"a\": \"\xff\"}").find("UTF-8"), std::string::npos);
  EXPECT_NE(error_of("{\"a\": 1,}").find("test.json"), std::string::npos);
  EXPECT_NE(error_of("[1, 2] x").find("after the JSON value"), std::string::npos);
  EXPECT_NE(error_of("{\"a\": 01}").find("test.json"), std::string::npos);
  EXPECT_NE(error_of("\"\\ud800\"").find("surrogate"), std::string::npos);
  EXPECT_NE(error_of(std::string(200, '[')).find("nesting"), std::string::npos);
  EXPECT_NE(error_of("").find("end of text"), std::string::npos);
}

TEST(Json, Utf8Validation) {
  EXPECT_TRUE(json::is_valid_utf8("plain \xe2\x82\xac"));
  EXPECT_FALSE(json::is_valid_utf8("\xc0\xaf"));          // overlong
  EXPECT_FALSE(json::is_valid_utf8("\xed\xa0\x80"));      // surrogate
  EXPECT_FALSE(json::is_valid_utf8("\xf4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(json::is_valid_utf8("\xe2\x82"));          // truncated
}

TEST(Json, DumpRoundTrips) {
  json::Value v = json::Value::object();
  v.set("x", 0.1);
  v.set("n", int64_t(1) << 40);
  v.set("s", "q\"\n");
  v.set("arr", json::Value::array({json::Value(1), json::Value(2.0)}));
  json::Value back = json::parse(v.dump(2), "dump");
  EXPECT_DOUBLE_EQ(back.find("x")->as_double(), 0.1);
  EXPECT_EQ(back.find("n")->as_int(), int64_t(1) << 40);
  EXPECT_EQ(back.find("s")->as_string(), "q\"\n");
  EXPECT_FALSE(back.find("arr")->items()[1].is_int());
}

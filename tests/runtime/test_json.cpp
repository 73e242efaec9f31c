// The strict JSON layer over nlohmann-json: types kept apart, duplicate keys, bad UTF-8 and out-of-range numbers
// rejected with the file and the position, and a writer that refuses NaN and infinity naming the field.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "runtime/error.h"
#include "runtime/json.h"
#include "test_util.h"

using namespace mlarun;

static std::string error_of(const std::string& text) {
  return mlarun::testing::error_message([&] { json::parse(text, "test.json"); });
}

TEST(Json, ParsesTypes) {
  json::Value v = json::parse(R"({"a": 1, "b": 2.5, "c": "x\u00e9", "d": [true, null], "e": {"f": -3e2}})", "t");
  EXPECT_TRUE(v.at("a").is_number_integer());
  EXPECT_EQ(v.at("a").get<int64_t>(), 1);
  EXPECT_TRUE(v.at("b").is_number_float());
  EXPECT_DOUBLE_EQ(v.at("b").get<double>(), 2.5);
  EXPECT_EQ(v.at("c").get<std::string>(), "x\xc3\xa9");
  EXPECT_TRUE(v.at("d")[1].is_null());
  EXPECT_TRUE(v.at("e").at("f").is_number_float());
  EXPECT_DOUBLE_EQ(v.at("e").at("f").get<double>(), -300.0);
  EXPECT_EQ(json::find(v, "zz"), nullptr);
  EXPECT_EQ(json::find(v.at("a"), "a"), nullptr) << "not an object";
  EXPECT_EQ(json::find(v, "a"), &v.at("a"));
  EXPECT_STREQ(json::kind_name(v.at("a")), "integer");
  EXPECT_STREQ(json::kind_name(v.at("b")), "number");
  EXPECT_STREQ(json::kind_name(v.at("d")), "array");
}

TEST(Json, KeepsFileOrder) {
  json::Value v = json::parse(R"({"z": 1, "a": 2, "m": 3})", "t");
  std::string keys;
  for (const auto& [key, value] : v.items()) keys += key;
  EXPECT_EQ(keys, "zam");
}

TEST(Json, IntegersStayApartFromFloats) {
  json::Value v = json::parse(R"({"s": "2048", "i": 2048, "f": 2048.0, "e": 2e3, "neg": -7, "big": 18446744073709551615})",
                              "t");
  EXPECT_TRUE(v.at("s").is_string());
  EXPECT_TRUE(v.at("i").is_number_integer());
  EXPECT_TRUE(v.at("f").is_number_float());
  EXPECT_TRUE(v.at("e").is_number_float());
  EXPECT_EQ(json::to_int64(v.at("i")), 2048);
  EXPECT_EQ(json::to_int64(v.at("neg")), -7);
  EXPECT_EQ(json::to_int64(v.at("f")), std::nullopt);
  EXPECT_EQ(json::to_int64(v.at("s")), std::nullopt);
  EXPECT_TRUE(v.at("big").is_number_unsigned());
  EXPECT_EQ(v.at("big").get<uint64_t>(), std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(json::to_int64(v.at("big")), std::nullopt) << "above INT64_MAX";
  // And back out: 2048.0 is written as a float, 2048 as an integer.
  EXPECT_EQ(json::dump(v), R"({"s":"2048","i":2048,"f":2048.0,"e":2000.0,"neg":-7,"big":18446744073709551615})");
}

TEST(Json, RejectsMalformedTextNamingFileAndPosition) {
  EXPECT_NE(error_of("{\"a\": \"\xff\"}").find("UTF-8"), std::string::npos);
  EXPECT_NE(error_of("{\"a\": 1,}").find("test.json: invalid JSON at line 1, column 9 (byte 8)"), std::string::npos)
      << error_of("{\"a\": 1,}");
  EXPECT_NE(error_of("[1, 2] x").find("expected end of input"), std::string::npos);
  EXPECT_NE(error_of("{\"a\": 01}").find("test.json"), std::string::npos);
  EXPECT_NE(error_of("\"\\ud800\"").find("surrogate"), std::string::npos);
  EXPECT_NE(error_of(std::string(200, '[')).find("nesting deeper than 128"), std::string::npos);
  EXPECT_NE(error_of("").find("end of input"), std::string::npos);
  EXPECT_NE(error_of("{\"a\": nan}").find("test.json"), std::string::npos);
  EXPECT_NE(error_of("{\"a\": 1} // note").find("test.json"), std::string::npos) << "no comments";
  // Lines and columns count from 1; the error on the third line names it.
  std::string third_line = error_of("{\n  \"a\": 1,\n  \"b\": tru\n}");
  EXPECT_NE(third_line.find("test.json: invalid JSON at line 3, column"), std::string::npos) << third_line;
}

TEST(Json, RejectsDuplicateKeysAtAnyDepth) {
  std::string top = error_of(R"({"a": 1, "a": 2})");
  EXPECT_NE(top.find("test.json: invalid JSON at line 1, column 12 (byte 11): duplicate key \"a\""), std::string::npos)
      << top;
  std::string nested = error_of("{\"x\": {\"y\": 1,\n \"y\": 2}}");
  EXPECT_NE(nested.find("test.json: invalid JSON at line 2, column 4"), std::string::npos) << nested;
  EXPECT_NE(nested.find("duplicate key \"y\""), std::string::npos) << nested;
  std::string in_array = error_of(R"([{"k": 1}, {"k": 1, "k": 1}])");
  EXPECT_NE(in_array.find("duplicate key \"k\""), std::string::npos) << in_array;
  // The same key in sibling objects is fine.
  EXPECT_NO_THROW(json::parse(R"({"p": {"k": 1}, "q": {"k": 2}, "k": 3})", "t"));
}

TEST(Json, RejectsNumbersBeyondTheirType) {
  std::string too_big = error_of("{\"n\": 18446744073709551616}");
  EXPECT_NE(too_big.find("integer 18446744073709551616 does not fit in 64 bits"), std::string::npos) << too_big;
  EXPECT_NE(too_big.find("column 7 (byte 6)"), std::string::npos) << too_big;
  EXPECT_NE(error_of("[-9223372036854775809]").find("does not fit in 64 bits"), std::string::npos);
  EXPECT_NE(error_of("[1e400]").find("number overflow"), std::string::npos);
  EXPECT_EQ(json::parse("[-9223372036854775808]", "t")[0].get<int64_t>(), std::numeric_limits<int64_t>::min());
}

TEST(Json, ParseFileNamesTheFile) {
  mlarun::testing::ScratchDir dir;
  std::string path = dir.write("dup.json", "{\"a\": 1,\n\"a\": 2}");
  EXPECT_ERROR_MENTIONS(json::parse_file(path), "dup.json: invalid JSON at line 2", "duplicate key \"a\"");
  EXPECT_ERROR_MENTIONS(json::parse_file(dir.file("absent.json")), "absent.json");
}

TEST(Json, Utf8Validation) {
  EXPECT_TRUE(json::is_valid_utf8("plain \xe2\x82\xac"));
  EXPECT_FALSE(json::is_valid_utf8("\xc0\xaf"));          // overlong
  EXPECT_FALSE(json::is_valid_utf8("\xed\xa0\x80"));      // surrogate
  EXPECT_FALSE(json::is_valid_utf8("\xf4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(json::is_valid_utf8("\xe2\x82"));          // truncated
  // The parser holds strings to the same rules.
  for (const char* bad : {"[\"\xc0\xaf\"]", "[\"\xed\xa0\x80\"]", "[\"\xf4\x90\x80\x80\"]", "[\"\xe2\x82\"]"})
    EXPECT_NE(error_of(bad).find("UTF-8"), std::string::npos) << error_of(bad);
}

TEST(Json, DumpRoundTrips) {
  json::Value v = json::Value::object();
  v["x"] = 0.1;
  v["n"] = int64_t(1) << 40;
  v["s"] = "q\"\n";
  v["arr"] = json::Value::array({1, 2.0});
  json::Value back = json::parse(json::dump(v, 2), "dump");
  EXPECT_DOUBLE_EQ(back.at("x").get<double>(), 0.1);
  EXPECT_EQ(back.at("n").get<int64_t>(), int64_t(1) << 40);
  EXPECT_EQ(back.at("s").get<std::string>(), "q\"\n");
  EXPECT_TRUE(back.at("arr")[1].is_number_float());
  EXPECT_EQ(back, v);
}

TEST(Json, DumpRefusesWhatJsonCannotHold) {
  json::Value v = json::Value::object();
  v["records"] = json::Value::array({json::Value::object(), json::Value::object()});
  v["records"][1]["deviation"] = std::numeric_limits<double>::quiet_NaN();
  EXPECT_ERROR_MENTIONS(json::dump(v), "'records[1].deviation'", "nan");
  v["records"][1]["deviation"] = std::numeric_limits<double>::infinity();
  EXPECT_ERROR_MENTIONS(json::dump(v, 2), "'records[1].deviation'", "inf");
  v["records"][1]["deviation"] = -std::numeric_limits<double>::infinity();
  EXPECT_ERROR_MENTIONS(json::dump(v), "'records[1].deviation'", "-inf");
  EXPECT_ERROR_MENTIONS(json::dump(json::Value(std::nan(""))), "the value", "nan");
  v["records"][1]["deviation"] = 0.25;
  v["name"] = "caf\xe9";
  EXPECT_ERROR_MENTIONS(json::dump(v), "'name'", "UTF-8");
  v["name"] = "ok";
  EXPECT_NO_THROW(json::dump(v));
  EXPECT_EQ(json::show(json::Value("caf\xe9")), "\"caf\xef\xbf\xbd\"") << "messages never throw";
}

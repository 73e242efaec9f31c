// JSON through nlohmann-json, with the strictness our files need. The tree is the library's (json::Value, an
// nlohmann::ordered_json); reading goes through parse(), which adds the rules the library leaves open: a duplicate
// key is an error (the library would keep the last one), an integer too large for 64 bits is an error (the
// library would round it to a float), nesting is bounded, and every error names the file and the position.
// Integers stay apart from floats in the tree (is_number_integer / is_number_float), so "2048", 2048 and 2048.0
// remain three different things. Writing goes through dump(), never Value::dump: the library writes NaN and
// infinity as null, and we would rather fail naming the field.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "runtime/json_fwd.h"

namespace mlarun::json {

inline constexpr int kMaxDepth = 128;  // nested arrays/objects; deeper text is rejected

// Parses exactly one JSON value from `text` (whitespace around it allowed). Throws mlarun::Error
// "<source>: invalid JSON at line L, column C (byte B): <what>" for bad syntax, invalid UTF-8, a duplicate key
// (named), an integer outside int64/uint64, a float outside double, or nesting deeper than kMaxDepth.
Value parse(const std::string& text, const std::string& source);
Value parse_file(const std::string& path);

// The text of `v`: compact when indent < 0, else one member per line indented by `indent` spaces. Throws
// mlarun::Error naming the field path ("records[2].deviation") for a NaN or infinite number, or for a string or
// key that is not valid UTF-8.
std::string dump(const Value& v, int indent = -1);

// Compact text of `v` for error messages; never throws (bytes that are not UTF-8 show as U+FFFD).
std::string show(const Value& v);

// Member `key` of an object; nullptr when it is absent or `v` is not an object.
const Value* find(const Value& v, const std::string& key);

// The value of an integer that fits int64_t; nullopt for anything else (floats, unsigned integers above
// INT64_MAX, non-numbers).
std::optional<int64_t> to_int64(const Value& v);

// For messages: "integer", "number" (a float), "string", "boolean", "null", "array" or "object".
const char* kind_name(const Value& v);

// Checks that `bytes` is well-formed UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF). The parser
// checks strings itself; this is for whole texts (a safetensors header) and for what we are about to write.
bool is_valid_utf8(const std::string& bytes);

}  // namespace mlarun::json

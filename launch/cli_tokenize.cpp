// `mlarun tokenize`: text to token ids and back with a Hugging Face tokenizer.json (engine/tokenizer.h), one
// text on the command line or a JSONL file in order ({"text": s} -> {"ids": [...]}, {"ids": [...]} ->
// {"text": s}, {"messages": [...]} -> the chat template's {"text", "ids"}), and `--bench` to time encoding on one thread (compare: tests/tools/make_tokenizer_goldens.py
// --bench runs HF tokenizers on the same text).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "engine/chat_template.h"
#include "engine/tokenizer.h"
#include "launch/commands.h"
#include "launch/output_path.h"
#include "runtime/json.h"

namespace mlarun::cli {

namespace {

struct TokenizeOptions {
  std::string tokenizer, text, input, out;
  bool add_special = false, skip_special = false, bench = false;
  int iters = 5;
};

// One input line -> its output line; throws mlarun::Error naming what is wrong with the line.
json::Value convert(const Tokenizer& tok, const TokenizeOptions& o, const json::Value& in, const std::string& where) {
  if (!in.is_object()) fail(where, ": a line must be a JSON object {\"text\": ...} or {\"ids\": [...]}");
  const json::Value* text = json::find(in, "text");
  const json::Value* ids = json::find(in, "ids");
  const json::Value* messages = json::find(in, "messages");
  if (int(bool(text)) + int(bool(ids)) + int(bool(messages)) != 1)
    fail(where, ": a line needs exactly one of \"text\", \"ids\" and \"messages\"");
  if (messages) {  // a chat: the template's text and its ids
    const json::Value* gen = json::find(in, "add_generation_prompt");
    if (gen && !gen->is_boolean()) fail(where, ": \"add_generation_prompt\" must be true or false");
    std::string prompt = apply_chat_template(tok, *messages, gen && gen->get<bool>());
    return {{"text", prompt}, {"ids", tok.encode(prompt)}};
  }
  if (text) {
    if (!text->is_string()) fail(where, ": \"text\" must be a string");
    return {{"ids", tok.encode(text->get<std::string>(), o.add_special)}};
  }
  if (!ids->is_array()) fail(where, ": \"ids\" must be an array of token ids");
  std::vector<int32_t> list;
  for (size_t i = 0; i < ids->size(); ++i) {
    auto v = json::to_int64((*ids)[i]);
    if (!v || *v < 0 || *v >= tok.vocab_size())
      fail(where, ": ids[", i, "] = ", json::show((*ids)[i]), " is not a token id (0..", tok.vocab_size() - 1, ")");
    list.push_back(int32_t(*v));
  }
  return {{"text", tok.decode(list, o.skip_special)}};
}

int run_file(const Tokenizer& tok, const TokenizeOptions& o) {
  std::ifstream in(o.input);
  if (!in) fail("option --input: cannot read '", o.input, "'");
  std::ostringstream out;
  std::string line;
  int64_t n = 0, failed = 0;
  for (int64_t lineno = 1; std::getline(in, line); ++lineno) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;  // blank lines carry nothing
    std::string where = o.input + ":" + std::to_string(lineno);
    json::Value result;
    try {
      result = convert(tok, o, json::parse(line, where), where);
    } catch (const Error& e) {
      std::cerr << "error: " << e.what() << "\n";
      result = {{"error", e.what()}};
      ++failed;
    }
    out << json::dump(result) << "\n";
    ++n;
  }
  if (o.out.empty() || o.out == "-") {
    std::cout << out.str();
  } else {
    std::ofstream f(o.out, std::ios::binary);
    f << out.str();
    if (!f) fail("option --out: cannot write '", o.out, "'");
  }
  std::cerr << "tokenize: " << n << " lines, " << failed << " failed\n";
  return failed ? 1 : 0;
}

// Encodes the texts (the --input lines' "text", joined by newlines, or --text) as one text, best of --iters.
int run_bench(const Tokenizer& tok, const TokenizeOptions& o) {
  std::string text = o.text;
  if (!o.input.empty()) {
    std::ifstream in(o.input);
    if (!in) fail("option --input: cannot read '", o.input, "'");
    std::string line;
    bool first = true;
    for (int64_t lineno = 1; std::getline(in, line); ++lineno) {
      json::Value v = json::parse(line, o.input + ":" + std::to_string(lineno));
      if (!v.is_object() || !json::find(v, "text")) continue;
      text += (first ? "" : "\n") + v["text"].get<std::string>();
      first = false;
    }
  }
  auto c0 = std::chrono::steady_clock::now();
  size_t tokens = tok.encode(text, o.add_special).size();  // cold: the piece cache starts empty
  double cold = std::chrono::duration<double>(std::chrono::steady_clock::now() - c0).count();
  double best = 1e30;
  for (int i = 0; i < o.iters; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    size_t n = tok.encode(text, o.add_special).size();
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::min(best, s);
    if (n != tokens) fail("tokenize --bench: encoding is not deterministic");
  }
  std::printf("mlarun tokenize: %zu bytes, %zu tokens, %.1f ms, %.2f M tokens/s (one thread, best of %d; first "
              "call %.1f ms, %.2f M tokens/s)\n", text.size(), tokens, best * 1e3, double(tokens) / best / 1e6, o.iters,
              cold * 1e3, double(tokens) / cold / 1e6);
  return 0;
}

}  // namespace

Command add_tokenize_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("tokenize", "Text to token ids and back with a Hugging Face tokenizer.json");
  auto o = std::make_shared<TokenizeOptions>();
  cmd->add_option("--tokenizer", o->tokenizer, "tokenizer.json, or a directory holding it (and tokenizer_config.json)")
      ->required();
  auto* text = cmd->add_option("--text", o->text, "Encode this text; prints {\"ids\": [...]}");
  auto* input = cmd->add_option("--input", o->input,
                                "JSONL: {\"text\": s} lines become {\"ids\": [...]}, {\"ids\": [...]} lines {\"text\": s}, "
                                "{\"messages\": [...], \"add_generation_prompt\": b} lines the chat template's {\"text\", \"ids\"}");
  cmd->add_option("--out", o->out, "Where --input's results go, one line per input line (default: stdout)");
  cmd->add_flag("--add-special-tokens", o->add_special, "Add bos/eos as tokenizer_config.json's add_bos_token says");
  cmd->add_flag("--skip-special-tokens", o->skip_special, "Leave special tokens out of decoded text");
  cmd->add_flag("--bench", o->bench, "Time encoding of --text or --input's texts (joined by newlines), one thread");
  cmd->add_option("--iters", o->iters, "Timed repetitions for --bench (the best is reported)")->check(CLI::Range(1, 1000));
  text->excludes(input);
  return {cmd, [o, text, input]() {
    if (!text->count() && !input->count()) {
      std::cerr << "error: tokenize needs --text T or --input FILE.jsonl\n";
      return 1;
    }
    if (!o->out.empty() && !input->count()) fail("option --out: only with --input");
    if (o->out != "-") check_output_path("--out", o->out);
    Tokenizer tok = Tokenizer::load(o->tokenizer);
    if (o->bench) return run_bench(tok, *o);
    if (!o->input.empty()) return run_file(tok, *o);
    std::cout << json::dump(json::Value{{"ids", tok.encode(o->text, o->add_special)}}) << "\n";
    return 0;
  }};
}

}  // namespace mlarun::cli

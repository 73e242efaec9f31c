// Byte-level BPE as Hugging Face `tokenizers` runs it (models/bpe + pre_tokenizers/byte_level), worked in raw
// bytes rather than GPT-2's byte-to-character alphabet: a piece's bytes are its symbols, the merges are pairs of
// ids, so nothing is re-encoded per call. The merge order is HF's exactly: the pair of lowest rank first, the
// leftmost among equal ranks. Also here: the byte <-> character map and UTF-8 decoding that replaces invalid
// sequences with U+FFFD as Rust's String::from_utf8_lossy does (HF's ByteLevel decoder), both used by tokenizer.cpp.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace mlarun::tok {

// GPT-2's map: byte b -> the character (UTF-8) that stands for it in a byte-level vocabulary.
const std::array<std::string, 256>& byte_to_char();
// The reverse: the bytes a byte-level token string stands for; false when a character is not in the map.
bool chars_to_bytes(std::string_view token, std::string* bytes);

// Rust's String::from_utf8_lossy: each maximal invalid subpart becomes one U+FFFD.
std::string utf8_lossy(std::string_view bytes);

class BytePairEncoder {
 public:
  // byte_ids[b]: the id of byte b's one-character token, -1 when the vocabulary lacks it (HF then drops the
  // byte, there being no unk token). merges: (left id, right id, merged id) in rank order.
  struct Merge {
    int32_t left, right, merged;
  };
  BytePairEncoder(const std::array<int32_t, 256>& byte_ids, const std::vector<Merge>& merges);

  // Appends the ids of one pre-tokenized piece (raw bytes) to `out`. `cache` memoises pieces (the caller owns
  // it, so a const tokenizer stays usable from many threads with one cache each).
  using Cache = std::unordered_map<std::string, std::vector<int32_t>>;
  void encode(std::string_view piece, std::vector<int32_t>* out, Cache* cache) const;

 private:
  void merge(std::string_view piece, std::vector<int32_t>* out) const;
  std::array<int32_t, 256> byte_ids_;
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges_;  // (left << 32 | right) -> (rank, merged)
};

}  // namespace mlarun::tok

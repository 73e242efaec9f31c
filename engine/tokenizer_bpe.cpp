// Byte-level BPE, the byte <-> character map and lossy UTF-8 decoding (see tokenizer_bpe.h for why bytes).
#include "engine/tokenizer_bpe.h"

#include <algorithm>
#include <queue>

namespace mlarun::tok {

namespace {

void append_utf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(char(cp));
  } else if (cp < 0x800) {
    out->push_back(char(0xC0 | (cp >> 6)));
    out->push_back(char(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(char(0xE0 | (cp >> 12)));
    out->push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(char(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(char(0xF0 | (cp >> 18)));
    out->push_back(char(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(char(0x80 | (cp & 0x3F)));
  }
}

// GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the others for 256 + n in order.
std::array<uint32_t, 256> byte_code_points() {
  std::array<uint32_t, 256> cps{};
  uint32_t n = 0;
  for (uint32_t b = 0; b < 256; ++b) {
    bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
    cps[b] = printable ? b : 256 + n++;
  }
  return cps;
}

}  // namespace

const std::array<std::string, 256>& byte_to_char() {
  static const std::array<std::string, 256> table = [] {
    std::array<std::string, 256> t;
    auto cps = byte_code_points();
    for (int b = 0; b < 256; ++b) append_utf8(cps[size_t(b)], &t[size_t(b)]);
    return t;
  }();
  return table;
}

bool chars_to_bytes(std::string_view token, std::string* bytes) {
  static const std::array<int16_t, 512> from_cp = [] {
    std::array<int16_t, 512> t;
    t.fill(-1);
    auto cps = byte_code_points();
    for (int b = 0; b < 256; ++b) t[cps[size_t(b)]] = int16_t(b);
    return t;
  }();
  bytes->clear();
  for (size_t i = 0; i < token.size();) {
    auto c = uint8_t(token[i]);
    uint32_t cp;
    if (c < 0x80) {
      cp = c;
      i += 1;
    } else if ((c & 0xE0) == 0xC0 && i + 1 < token.size()) {
      cp = uint32_t(c & 0x1F) << 6 | (uint8_t(token[i + 1]) & 0x3F);
      i += 2;
    } else {
      return false;  // every mapped character is below U+0200: two bytes at most
    }
    if (cp >= from_cp.size() || from_cp[cp] < 0) return false;
    bytes->push_back(char(from_cp[cp]));
  }
  return true;
}

std::string utf8_lossy(std::string_view s) {
  static const char kReplacement[] = "\xEF\xBF\xBD";
  std::string out;
  out.reserve(s.size());
  size_t i = 0, n = s.size();
  auto cont = [&](size_t k) { return k < n && (uint8_t(s[k]) & 0xC0) == 0x80; };
  while (i < n) {
    auto b = uint8_t(s[i]);
    if (b < 0x80) {
      out.push_back(char(b));
      ++i;
      continue;
    }
    size_t len = 0;  // a valid sequence's length; 0 while invalid
    size_t bad = 1;  // how many bytes the invalid subpart covers
    auto second_ok = [&](uint8_t lo, uint8_t hi) {
      return i + 1 < n && uint8_t(s[i + 1]) >= lo && uint8_t(s[i + 1]) <= hi;
    };
    if (b >= 0xC2 && b <= 0xDF) {
      if (cont(i + 1)) len = 2;
    } else if (b >= 0xE0 && b <= 0xEF) {
      bool ok = b == 0xE0 ? second_ok(0xA0, 0xBF) : b == 0xED ? second_ok(0x80, 0x9F) : second_ok(0x80, 0xBF);
      if (ok) {
        if (cont(i + 2)) len = 3; else bad = 2;
      }
    } else if (b >= 0xF0 && b <= 0xF4) {
      bool ok = b == 0xF0 ? second_ok(0x90, 0xBF) : b == 0xF4 ? second_ok(0x80, 0x8F) : second_ok(0x80, 0xBF);
      if (ok) {
        if (!cont(i + 2)) bad = 2;
        else if (!cont(i + 3)) bad = 3;
        else len = 4;
      }
    }
    if (len) {
      out.append(s.data() + i, len);
      i += len;
    } else {
      out.append(kReplacement);
      i += bad;
    }
  }
  return out;
}

BytePairEncoder::BytePairEncoder(const std::array<int32_t, 256>& byte_ids, const std::vector<Merge>& merges)
    : byte_ids_(byte_ids) {
  merges_.reserve(merges.size() * 2);
  for (size_t r = 0; r < merges.size(); ++r) {
    uint64_t key = uint64_t(uint32_t(merges[r].left)) << 32 | uint32_t(merges[r].right);
    merges_.emplace(key, std::make_pair(int32_t(r), merges[r].merged));  // the first (lowest) rank wins, as in HF
  }
}

void BytePairEncoder::encode(std::string_view piece, std::vector<int32_t>* out, Cache* cache) const {
  if (piece.size() == 1) {
    if (byte_ids_[uint8_t(piece[0])] >= 0) out->push_back(byte_ids_[uint8_t(piece[0])]);
    return;
  }
  if (cache && piece.size() <= 256) {
    auto it = cache->find(std::string(piece));
    if (it != cache->end()) {
      out->insert(out->end(), it->second.begin(), it->second.end());
      return;
    }
    std::vector<int32_t> ids;
    merge(piece, &ids);
    out->insert(out->end(), ids.begin(), ids.end());
    if (cache->size() >= 100000) cache->clear();
    cache->emplace(std::string(piece), std::move(ids));
    return;
  }
  merge(piece, out);
}

// HF's Word::merge_all: a heap of (rank, position) over adjacent pairs; a popped pair that no longer exists
// (a side merged away) is skipped; each merge queues the pairs it forms with its neighbours.
void BytePairEncoder::merge(std::string_view piece, std::vector<int32_t>* out) const {
  struct Symbol {
    int32_t id, prev, next;
  };
  std::vector<Symbol> sym;
  sym.reserve(piece.size());
  for (char c : piece) {
    int32_t id = byte_ids_[uint8_t(c)];
    if (id < 0) continue;
    int32_t k = int32_t(sym.size());
    sym.push_back({id, k - 1, k + 1});
  }
  if (sym.empty()) return;
  sym.back().next = -1;
  struct Cand {
    int32_t rank, pos, merged;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::vector<Cand> storage;
  storage.reserve(sym.size());
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap(std::greater<Cand>(), std::move(storage));
  auto lookup = [&](int32_t a, int32_t b, int32_t* rank, int32_t* merged) {
    auto it = merges_.find(uint64_t(uint32_t(a)) << 32 | uint32_t(b));
    if (it == merges_.end()) return false;
    *rank = it->second.first;
    *merged = it->second.second;
    return true;
  };
  int32_t rank, merged;
  for (int32_t k = 0; k + 1 < int32_t(sym.size()); ++k)
    if (lookup(sym[size_t(k)].id, sym[size_t(k + 1)].id, &rank, &merged)) heap.push({rank, k, merged});
  while (!heap.empty()) {
    Cand top = heap.top();
    heap.pop();
    Symbol& left = sym[size_t(top.pos)];
    if (left.id < 0 || left.next < 0) continue;
    Symbol& right = sym[size_t(left.next)];
    if (!lookup(left.id, right.id, &rank, &merged) || merged != top.merged) continue;
    left.id = merged;
    right.id = -1;  // removed
    left.next = right.next;
    if (left.next >= 0) sym[size_t(left.next)].prev = top.pos;
    if (left.prev >= 0 && lookup(sym[size_t(left.prev)].id, left.id, &rank, &merged))
      heap.push({rank, left.prev, merged});
    if (left.next >= 0 && lookup(left.id, sym[size_t(left.next)].id, &rank, &merged))
      heap.push({rank, top.pos, merged});
  }
  for (int32_t k = 0; k >= 0; k = sym[size_t(k)].next) out->push_back(sym[size_t(k)].id);
}

}  // namespace mlarun::tok

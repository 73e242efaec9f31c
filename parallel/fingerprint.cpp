// The start-up fingerprint check (see fingerprint.h): hashing the config, comparing the gathered fingerprints,
// and the exchange itself (one MPI_Iallgather of fixed-size records, watched like any other collective).
#include "parallel/fingerprint.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <sstream>

#include "runtime/error.h"
#include "runtime/json.h"

namespace mlarun {

namespace {

// What travels: fixed sizes, so one MPI_Allgather of bytes carries it.
struct FingerprintRecord {
  uint64_t config_hash;
  char model[256];
  char options[512];
};

// Copies `s` into `out` (NUL-terminated); a string too long keeps its end (the distinctive part of a path).
template <size_t N>
void put(char (&out)[N], const std::string& s) {
  std::memset(out, 0, N);
  const size_t n = std::min(s.size(), N - 1);
  std::memcpy(out, s.data() + (s.size() - n), n);
}

std::map<std::string, std::string> option_words(const std::string& options) {
  std::map<std::string, std::string> words;
  std::istringstream in(options);
  std::string word;
  while (in >> word) {
    const size_t eq = word.find('=');
    words[word.substr(0, eq)] = eq == std::string::npos ? "" : word.substr(eq + 1);
  }
  return words;
}

// "block-size 16 vs 8, max-num-seqs 4 vs 256": the options whose values differ between `a` and `b`.
std::string option_differences(const std::string& a, const std::string& b) {
  auto wa = option_words(a), wb = option_words(b);
  std::string out;
  auto add = [&](const std::string& name, const std::string& va, const std::string& vb) {
    out += (out.empty() ? "" : ", ") + name + " " + va + " vs " + vb;
  };
  for (const auto& [name, value] : wa) {
    auto it = wb.find(name);
    if (it == wb.end()) add(name, value, "(not set)");
    else if (it->second != value) add(name, value, it->second);
  }
  for (const auto& [name, value] : wb)
    if (!wa.count(name)) add(name, "(not set)", value);
  return out.empty() ? a + " vs " + b : out;
}

std::string others(const std::vector<int>& ranks) {
  if (ranks.size() <= 1) return "";
  std::string s = " (ranks";
  for (size_t i = 0; i < ranks.size(); ++i) s += (i ? ", " : " ") + std::to_string(ranks[i]);
  return s + " differ from rank 0)";
}

}  // namespace

uint64_t fnv1a64(std::string_view bytes, uint64_t hash) {
  for (unsigned char c : bytes) {
    hash ^= c;
    hash *= 1099511628211ull;
  }
  return hash;
}

uint64_t model_config_hash(const ModelConfig& c) {
  json::Value j = c.to_json();
  j.erase("source");
  // Fields to_json() leaves out but the model depends on.
  j["scale_fmt"] = c.scale_fmt;
  j["has_gate_bias"] = c.has_gate_bias;
  j["rope_attention_factor"] = c.rope_attention_factor;
  j["moe_layer_freq"] = c.moe_layer_freq;
  j["rope_interleaved"] = c.rope_interleaved;
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["bos_token_id"] = c.bos_token_id;
  j["eos_token_id"] = c.eos_token_id;
  return fnv1a64(j.dump());
}

std::string fingerprint_mismatch(const std::vector<RunFingerprint>& per_rank) {
  if (per_rank.size() < 2) return "";
  const RunFingerprint& first = per_rank[0];
  std::vector<int> config_differs, options_differ;
  for (size_t r = 1; r < per_rank.size(); ++r) {
    if (per_rank[r].config_hash != first.config_hash) config_differs.push_back(int(r));
    else if (per_rank[r].options != first.options) options_differ.push_back(int(r));
  }
  if (!config_differs.empty()) {
    const RunFingerprint& other = per_rank[size_t(config_differs[0])];
    return detail::concat("rank ", config_differs[0], "'s model config differs from rank 0's (", other.model, " vs ",
                          first.model, ")", others(config_differs),
                          "; every rank must be given the same model (--model)");
  }
  if (!options_differ.empty()) {
    const RunFingerprint& other = per_rank[size_t(options_differ[0])];
    return detail::concat("rank ", options_differ[0], "'s options differ from rank 0's (",
                          option_differences(other.options, first.options), ")", others(options_differ),
                          "; every rank must be given the same options");
  }
  return "";
}

void check_same_fingerprint(const RunFingerprint& mine, MPI_Comm comm, double timeout_seconds) {
  int world = 1;
  MPI_Comm_size(comm, &world);
  if (world == 1) return;
  FingerprintRecord record{};
  record.config_hash = mine.config_hash;
  put(record.model, mine.model);
  put(record.options, mine.options);
  std::vector<FingerprintRecord> all(static_cast<size_t>(world));

  CollectiveWatchdog watchdog(comm, "mpi", timeout_seconds);
  watchdog.begin({"start-up fingerprint all_gather", int64_t(sizeof record), "bytes"});
  MPI_Request request = MPI_REQUEST_NULL;
  const int rc = MPI_Iallgather(&record, int(sizeof record), MPI_BYTE, all.data(), int(sizeof record), MPI_BYTE,
                                comm, &request);
  MLARUN_CHECK(rc == MPI_SUCCESS, "start-up fingerprint: MPI_Iallgather failed (MPI error ", rc, ")");
  watchdog.wait_request(request, "MPI_Iallgather");

  std::vector<RunFingerprint> per_rank;
  for (const FingerprintRecord& r : all) per_rank.push_back({r.model, r.config_hash, r.options});
  const std::string mismatch = fingerprint_mismatch(per_rank);
  if (!mismatch.empty()) fail(mismatch);
}

}  // namespace mlarun

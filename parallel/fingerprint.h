// Start-up agreement check: ranks given different models (or different cache and batching options) would
// otherwise run into each other's collectives with mismatched sizes and die with MPI_ERR_TRUNCATE, or worse,
// compute garbage. Each rank sums up what must agree in a fingerprint; check_same_fingerprint gathers them all
// once, before the model is loaded, and fails on every rank alike with a message naming the ranks and what
// differs ("rank 1's model config differs from rank 0's (.../deepseek-v3-tiny vs .../deepseek-v2-tiny)").
#pragma once

#include <mpi.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "parallel/collective_watchdog.h"
#include "runtime/model_config.h"

namespace mlarun {

// FNV-1a, 64 bits: a stable hash of bytes (the same on every machine and build).
inline constexpr uint64_t kFnv1aOffset = 14695981039346656037ull;
uint64_t fnv1a64(std::string_view bytes, uint64_t hash = kFnv1aOffset);

// A hash of every field of the parsed config that shapes the model (not `source`, the path it came from), so
// two copies of one checkpoint at different paths agree.
uint64_t model_config_hash(const ModelConfig& config);

struct RunFingerprint {
  std::string model;         // how the model is named in messages: its directory
  uint64_t config_hash = 0;  // model_config_hash
  std::string options;       // the options that must agree, as "name=value" words: "tp=2 block-size=8 ..."
};

// Empty when every rank agrees, else the message: the model config is compared first, then the options (naming
// the options whose values differ). Pure, for tests; per_rank[r] is rank r's fingerprint.
std::string fingerprint_mismatch(const std::vector<RunFingerprint>& per_rank);

// Collective over `comm`: gathers every rank's fingerprint (watched by a collective watchdog with
// `timeout_seconds`) and throws mlarun::Error, on every rank alike, when they differ. Long names are cut to
// their last 255 bytes and options to 511 for the exchange.
void check_same_fingerprint(const RunFingerprint& mine, MPI_Comm comm = MPI_COMM_WORLD,
                            double timeout_seconds = kDefaultCollectiveTimeoutSeconds);

}  // namespace mlarun

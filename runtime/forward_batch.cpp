// ForwardBatch construction and the cache slot formula (see forward_batch.h): written once, used by the engine,
// the GPU memory profiler, the benchmarks and the tests.
#include "runtime/forward_batch.h"

#include "runtime/error.h"

namespace mlarun {

int64_t cache_slot(const std::vector<int32_t>& block_table, int64_t position, int64_t block_size,
                   const std::string& who) {
  MLARUN_CHECK(block_size >= 1, "block_size must be >= 1, got ", block_size);
  const int64_t block_index = position / block_size;
  MLARUN_CHECK(position >= 0 && block_index < int64_t(block_table.size()), who, ": position ", position,
               " has no cache block (", block_table.size(), " blocks of ", block_size, " tokens)");
  return int64_t(block_table[size_t(block_index)]) * block_size + position % block_size;
}

int64_t ForwardBatch::add_sequence(const int32_t* tokens, int64_t count, int64_t start_pos,
                                   std::vector<int32_t> block_table, int64_t block_size) {
  const int64_t first = num_tokens();
  for (int64_t i = 0; i < count; ++i) {
    token_ids.push_back(tokens[i]);
    positions.push_back(start_pos + i);
    slot_mapping.push_back(cache_slot(block_table, start_pos + i, block_size));
  }
  sequences.push_back({first, count, start_pos, std::move(block_table)});
  return first;
}

}  // namespace mlarun

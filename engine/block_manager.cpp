// BlockManager: free list, reference counts and the chained-hash prefix cache (see block_manager.h for the rules).
#include "engine/block_manager.h"

#include <algorithm>
#include <iterator>

#include "runtime/error.h"

namespace mlarun {

uint64_t hash_block_tokens(uint64_t prev_hash, const int32_t* tokens, int64_t count) {
  uint64_t h = 14695981039346656037ull;  // FNV-1a offset basis
  auto mix_byte = [&h](uint64_t byte) { h = (h ^ (byte & 0xff)) * 1099511628211ull; };
  for (int shift = 0; shift < 64; shift += 8) mix_byte(prev_hash >> shift);
  for (int64_t i = 0; i < count; ++i) {
    const auto t = static_cast<uint32_t>(tokens[i]);
    for (int shift = 0; shift < 32; shift += 8) mix_byte(t >> shift);
  }
  // splitmix64 finaliser: FNV-1a alone leaves the high bits weakly mixed.
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebull;
  return h ^ (h >> 31);
}

BlockManager::BlockManager(int64_t num_blocks, int64_t block_size, bool enable_prefix_caching, BlockHashFn hash_fn)
    : block_size_(block_size), enable_prefix_caching_(enable_prefix_caching), hash_fn_(hash_fn) {
  // The scheduler's block: --block-size (1..256 per rank) times the decode-context-parallel group's size.
  constexpr int64_t kMaxGroupBlock = 256 * 1024;
  MLARUN_CHECK(block_size >= 1 && block_size <= kMaxGroupBlock, "block_size must be in [1, ", kMaxGroupBlock,
               "] (256 per rank times the DCP group), got ", block_size);
  MLARUN_CHECK(num_blocks >= 1 && num_blocks <= INT32_MAX, "num_blocks must be in [1, 2^31), got ", num_blocks);
  MLARUN_CHECK(hash_fn != nullptr, "BlockManager needs a block hash function");
  blocks_.resize(static_cast<size_t>(num_blocks));
  for (int32_t id = 0; id < static_cast<int32_t>(num_blocks); ++id) {
    free_list_.push_back(id);
    blocks_[id].free_pos = std::prev(free_list_.end());
  }
}

int32_t BlockManager::ref_count(int32_t block_id) const {
  MLARUN_CHECK(block_id >= 0 && block_id < num_blocks(), "block id ", block_id, " out of range [0, ", num_blocks(),
               ")");
  return blocks_[block_id].ref_count;
}

int32_t BlockManager::take_free_block() {
  MLARUN_CHECK(!free_list_.empty(), "out of cache blocks: all ", num_blocks(), " blocks are in use");
  const int32_t id = free_list_.front();
  free_list_.pop_front();
  Block& b = blocks_[id];
  if (b.has_hash) {  // evict: this prefix is no longer findable
    auto it = cached_blocks_.find(b.hash);
    if (it != cached_blocks_.end() && it->second == id) cached_blocks_.erase(it);
  }
  b.has_hash = false;
  b.hash = 0;
  b.parent = -1;
  b.parent_generation = 0;
  b.token_ids.clear();
  b.num_tokens = 0;
  b.generation += 1;
  b.ref_count = 1;
  return id;
}

void BlockManager::release_block(int32_t id) {
  Block& b = blocks_[id];
  if (--b.ref_count == 0) {
    free_list_.push_back(id);
    b.free_pos = std::prev(free_list_.end());
  }
}

std::vector<int32_t> BlockManager::find_cached_prefix(const Sequence& seq) const {
  std::vector<int32_t> hits;
  if (!enable_prefix_caching_) return hits;
  const int64_t eligible = (seq.num_tokens() - 1) / block_size_;  // full blocks before the last token's block
  const int32_t* tokens = seq.token_ids().data();
  uint64_t prev_hash = 0;
  int32_t parent = -1;
  for (int64_t i = 0; i < eligible; ++i) {
    const int32_t* block_tokens = tokens + i * block_size_;
    const uint64_t h = hash_fn_(prev_hash, block_tokens, block_size_);
    auto it = cached_blocks_.find(h);
    if (it == cached_blocks_.end()) break;
    const Block& b = blocks_[it->second];
    const bool same_prefix =
        b.parent == parent && (parent < 0 || b.parent_generation == blocks_[parent].generation);
    const bool same_tokens = std::equal(b.token_ids.begin(), b.token_ids.end(), block_tokens,
                                        block_tokens + block_size_);
    if (!b.has_hash || b.hash != h || !same_prefix || !same_tokens) break;  // collision or stale entry
    hits.push_back(it->second);
    prev_hash = h;
    parent = it->second;
  }
  return hits;
}

int64_t BlockManager::free_blocks_needed(const Sequence& seq, const std::vector<int32_t>& hits) const {
  // A hit on a live block costs nothing; a hit on a free (cached) block takes it off the free list like a fresh one.
  const auto live_hits = std::count_if(hits.begin(), hits.end(), [&](int32_t id) { return blocks_[id].ref_count > 0; });
  return seq.num_blocks(block_size_) - live_hits;
}

bool BlockManager::can_allocate(const Sequence& seq) const {
  if (seq.num_tokens() == 0) return false;
  return free_blocks_needed(seq, find_cached_prefix(seq)) <= num_free_blocks();
}

void BlockManager::allocate(Sequence& seq) {
  MLARUN_CHECK(seq.block_table.empty(), "sequence ", seq.id(), " already holds ", seq.block_table.size(),
               " cache blocks");
  MLARUN_CHECK(seq.num_tokens() >= 1, "sequence ", seq.id(), " has no tokens to allocate cache blocks for");
  const std::vector<int32_t> hits = find_cached_prefix(seq);
  const int64_t needed = free_blocks_needed(seq, hits);
  MLARUN_CHECK(needed <= num_free_blocks(), "out of cache blocks: sequence ", seq.id(), " needs ", needed,
               " free blocks, ", num_free_blocks(), " are free");
  if (enable_prefix_caching_) prefix_queries_ += (seq.num_tokens() - 1) / block_size_;
  prefix_hits_ += static_cast<int64_t>(hits.size());

  for (int32_t id : hits) {  // claim every hit before taking fresh blocks, so none of them is evicted
    Block& b = blocks_[id];
    if (b.ref_count == 0) free_list_.erase(b.free_pos);
    b.ref_count += 1;
    b.num_tokens = block_size_;
    seq.block_table.push_back(id);
  }
  const int64_t total = seq.num_blocks(block_size_);
  for (int64_t i = static_cast<int64_t>(hits.size()); i < total; ++i) {
    const int32_t id = take_free_block();
    blocks_[id].num_tokens = std::min(block_size_, seq.num_tokens() - i * block_size_);
    seq.block_table.push_back(id);
  }
  seq.num_cached_tokens = static_cast<int64_t>(hits.size()) * block_size_;
}

void BlockManager::deallocate(Sequence& seq) {
  MLARUN_CHECK(!seq.block_table.empty(), "sequence ", seq.id(), " holds no cache blocks (freed twice?)");
  for (int32_t id : seq.block_table) {
    MLARUN_CHECK(id >= 0 && id < num_blocks(), "sequence ", seq.id(), " holds block id ", id, " outside [0, ",
                 num_blocks(), ")");
    MLARUN_CHECK(blocks_[id].ref_count > 0, "double free: block ", id, " of sequence ", seq.id(), " is already free");
  }
  for (auto it = seq.block_table.rbegin(); it != seq.block_table.rend(); ++it) release_block(*it);
  seq.block_table.clear();
  seq.num_cached_tokens = 0;
}

bool BlockManager::can_append(const Sequence& seq) const {
  const int64_t missing = seq.num_blocks(block_size_) - static_cast<int64_t>(seq.block_table.size());
  return missing <= num_free_blocks();
}

void BlockManager::may_append(Sequence& seq) {
  MLARUN_CHECK(!seq.block_table.empty(), "may_append: sequence ", seq.id(), " has no cache blocks; allocate first");
  const int64_t needed = seq.num_blocks(block_size_);
  MLARUN_CHECK(static_cast<int64_t>(seq.block_table.size()) <= needed, "sequence ", seq.id(), " holds ",
               seq.block_table.size(), " blocks for ", seq.num_tokens(), " tokens");
  while (static_cast<int64_t>(seq.block_table.size()) < needed) seq.block_table.push_back(take_free_block());
  Block& last = blocks_[seq.block_table.back()];
  MLARUN_CHECK(last.ref_count == 1, "sequence ", seq.id(), " would write into shared block ", seq.block_table.back());
  last.num_tokens = seq.num_tokens() - (needed - 1) * block_size_;
}

void BlockManager::mark_computed(Sequence& seq, int64_t num_new_tokens) {
  const int64_t old_cached = seq.num_cached_tokens;
  const int64_t new_cached = old_cached + num_new_tokens;
  MLARUN_CHECK(num_new_tokens >= 0 && new_cached <= seq.num_tokens() &&
                   new_cached <= static_cast<int64_t>(seq.block_table.size()) * block_size_,
               "mark_computed: sequence ", seq.id(), " cannot advance from ", old_cached, " by ", num_new_tokens,
               " tokens (", seq.num_tokens(), " tokens, ", seq.block_table.size(), " blocks)");
  seq.num_cached_tokens = new_cached;
  if (!enable_prefix_caching_) return;
  for (int64_t i = old_cached / block_size_; i < new_cached / block_size_; ++i) {
    const int32_t id = seq.block_table[i];
    Block& b = blocks_[id];
    if (b.has_hash) continue;  // a prefix hit, already registered
    const int32_t parent = i > 0 ? seq.block_table[i - 1] : -1;
    if (parent >= 0 && !blocks_[parent].has_hash) break;  // chain broken: nothing after it can be keyed
    const int32_t* tokens = seq.token_ids().data() + i * block_size_;
    b.hash = hash_fn_(parent >= 0 ? blocks_[parent].hash : 0, tokens, block_size_);
    b.has_hash = true;
    b.parent = parent;
    b.parent_generation = parent >= 0 ? blocks_[parent].generation : 0;
    b.token_ids.assign(tokens, tokens + block_size_);
    cached_blocks_[b.hash] = id;  // the latest writer of a duplicate prefix wins; the older copy stays valid
  }
}

BlockManagerStats BlockManager::stats() const {
  BlockManagerStats s;
  s.num_blocks = num_blocks();
  for (const Block& b : blocks_) {
    if (b.ref_count == 0) continue;
    s.used += 1;
    s.shared += b.ref_count > 1 ? 1 : 0;
    s.tokens_stored += b.num_tokens;
  }
  s.free = num_free_blocks();
  s.prefix_queries = prefix_queries_;
  s.prefix_hits = prefix_hits_;
  s.slots_reserved = s.used * block_size_;
  return s;
}

}  // namespace mlarun

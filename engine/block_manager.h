// BlockManager: the paged cache's bookkeeping (ids and counts only). Hands out fixed-size blocks from a free list,
// shares full blocks between sequences by reference count (prefix caching), and reports how full the pool is.
//
// Prefix caching, as vLLM and nano-vllm do it: a FULL block is keyed by a 64-bit hash chained on its
// predecessor's hash. A lookup hit must also match the stored token ids and the predecessor block (id and
// generation), so a hash collision can never share a block with different contents or a different prefix.
// A block is registered only once every one of its tokens is WRITTEN (mark_computed), never at allocation,
// so a chunked prefill or a batch-mate can't hit a block whose contents are still to come. A freed block keeps
// its hash and stays findable until the free list hands it out again (freed blocks go to the back, fresh
// ones come from the front, so cached prefixes are evicted last).
//
// Shared blocks are never written. The block holding a sequence's last token is never taken from the cache
// (vLLM's rule): the model must compute at least that token to produce logits, and it writes into a block it
// owns alone. A fully cached prompt whose length is a multiple of block_size therefore recomputes its last block.
#pragma once

#include <cstdint>
#include <list>
#include <unordered_map>
#include <vector>

#include "engine/sequence.h"

namespace mlarun {

// Chained block hash: FNV-1a over prev_hash and the token ids, then a splitmix64 finaliser.
uint64_t hash_block_tokens(uint64_t prev_hash, const int32_t* tokens, int64_t count);
using BlockHashFn = uint64_t (*)(uint64_t prev_hash, const int32_t* tokens, int64_t count);

struct BlockManagerStats {
  int64_t num_blocks = 0;       // total in the pool
  int64_t used = 0;             // ref count > 0
  int64_t free = 0;             // ref count 0 (some still hold a findable cached prefix)
  int64_t shared = 0;           // ref count > 1
  int64_t prefix_queries = 0;   // full blocks allocate() could have reused (all but the block of the last token)
  int64_t prefix_hits = 0;      // of those, blocks reused from the prefix cache
  int64_t tokens_stored = 0;    // token positions held by live sequences (a shared block counts once)
  int64_t slots_reserved = 0;   // used * block_size; slots_reserved - tokens_stored is the partly-filled waste
  double hit_rate() const { return prefix_queries ? static_cast<double>(prefix_hits) / prefix_queries : 0.0; }
};

class BlockManager {
 public:
  // hash_fn is a seam for tests that force collisions; production code keeps the default.
  BlockManager(int64_t num_blocks, int64_t block_size, bool enable_prefix_caching = true,
               BlockHashFn hash_fn = &hash_block_tokens);

  int64_t block_size() const { return block_size_; }
  int64_t num_blocks() const { return static_cast<int64_t>(blocks_.size()); }
  int64_t num_free_blocks() const { return static_cast<int64_t>(free_list_.size()); }
  bool prefix_caching() const { return enable_prefix_caching_; }
  int32_t ref_count(int32_t block_id) const;

  // True when allocate(seq) would succeed now (counts prefix hits on live blocks as needing no free block).
  bool can_allocate(const Sequence& seq) const;
  // Gives a sequence with no blocks a block table covering all its current tokens, reusing cached full blocks
  // for its prefix, and sets num_cached_tokens to the tokens those hits cover (always <= num_tokens - 1).
  void allocate(Sequence& seq);
  // Drops the sequence's references (last block first, so its prefix is evicted last); clears block_table and
  // num_cached_tokens. Throws on a sequence without blocks or a block already free (double free).
  void deallocate(Sequence& seq);

  // Before a step that writes the sequence's tokens up to position num_tokens - 1 (a decode writes exactly that
  // one): may_append makes the block table cover ceil(num_tokens / block_size) blocks, taking a fresh block when
  // the last token starts a new block. can_append says whether the free list has the block it would need.
  bool can_append(const Sequence& seq) const;
  void may_append(Sequence& seq);

  // After a step wrote `num_new_tokens` more of the sequence's tokens: advances num_cached_tokens and registers
  // in the prefix cache every block that this made full.
  void mark_computed(Sequence& seq, int64_t num_new_tokens);

  BlockManagerStats stats() const;

 private:
  struct Block {
    int32_t ref_count = 0;
    int64_t num_tokens = 0;         // positions in use by the owning sequence(s)
    uint64_t generation = 0;        // bumped each time the free list hands the block out
    bool has_hash = false;          // full, written, and keyed in the prefix cache
    uint64_t hash = 0;
    int32_t parent = -1;            // predecessor block of the registered prefix (-1 for the first)
    uint64_t parent_generation = 0;
    std::vector<int32_t> token_ids; // this block's tokens, compared on a hit
    std::list<int32_t>::iterator free_pos;  // position in free_list_ while ref_count == 0
  };

  int32_t take_free_block();       // front of the free list, ref count 1; evicts the hash it held
  void release_block(int32_t id);  // one reference fewer; at 0 the block goes to the back of the free list
  // The leading blocks of the sequence that the prefix cache already holds (never the block of its last token).
  std::vector<int32_t> find_cached_prefix(const Sequence& seq) const;
  int64_t free_blocks_needed(const Sequence& seq, const std::vector<int32_t>& hits) const;

  int64_t block_size_;
  bool enable_prefix_caching_;
  BlockHashFn hash_fn_;
  std::vector<Block> blocks_;
  std::list<int32_t> free_list_;  // a list, so a hit can take a free block out of the middle in O(1)
  std::unordered_map<uint64_t, int32_t> cached_blocks_;  // hash -> block holding that prefix
  int64_t prefix_queries_ = 0;
  int64_t prefix_hits_ = 0;
};

}  // namespace mlarun

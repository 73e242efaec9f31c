// BlockManager: allocation and reference counts, prefix-cache hits (and the rules that keep shared blocks
// unwritten), the collision guard, eviction order, append, and the stats the cache benchmark reports.
#include <numeric>

#include "engine/block_manager.h"
#include "test_util.h"

namespace mlarun {
namespace {

std::vector<int32_t> iota_tokens(int32_t n, int32_t first = 1) {
  std::vector<int32_t> t(n);
  std::iota(t.begin(), t.end(), first);
  return t;
}

// Allocates and marks every current token written, as a finished prefill would.
void prefill(BlockManager& bm, Sequence& seq) {
  bm.allocate(seq);
  bm.mark_computed(seq, seq.num_tokens() - seq.num_cached_tokens);
}

TEST(BlockManager, RejectsBadPoolShapes) {
  EXPECT_ERROR_MENTIONS(BlockManager(8, 0), "block_size", "0");
  EXPECT_ERROR_MENTIONS(BlockManager(8, 262145), "block_size", "262145");  // 256 per rank x 1024 ranks at most
  EXPECT_ERROR_MENTIONS(BlockManager(0, 16), "num_blocks", "0");
  EXPECT_NO_THROW(BlockManager(1, 256));
}

TEST(BlockManager, AllocateAndFreeCountsBlocks) {
  BlockManager bm(10, 4);
  Sequence seq(1, iota_tokens(10));
  ASSERT_TRUE(bm.can_allocate(seq));
  bm.allocate(seq);
  ASSERT_EQ(seq.block_table.size(), 3u);
  EXPECT_EQ(seq.num_cached_tokens, 0);
  EXPECT_EQ(bm.num_free_blocks(), 7);
  for (int32_t id : seq.block_table) EXPECT_EQ(bm.ref_count(id), 1);
  EXPECT_EQ(seq.slot(9, 4), seq.block_table[2] * 4 + 1);

  BlockManagerStats s = bm.stats();
  EXPECT_EQ(s.num_blocks, 10);
  EXPECT_EQ(s.used, 3);
  EXPECT_EQ(s.free, 7);
  EXPECT_EQ(s.shared, 0);
  EXPECT_EQ(s.tokens_stored, 10);
  EXPECT_EQ(s.slots_reserved, 12);

  const std::vector<int32_t> held = seq.block_table;
  bm.deallocate(seq);
  EXPECT_TRUE(seq.block_table.empty());
  EXPECT_EQ(bm.num_free_blocks(), 10);
  for (int32_t id : held) EXPECT_EQ(bm.ref_count(id), 0);
  EXPECT_EQ(bm.stats().used, 0);
  EXPECT_EQ(bm.stats().tokens_stored, 0);
}

TEST(BlockManager, DoubleFreeThrows) {
  BlockManager bm(4, 4);
  Sequence seq(7, iota_tokens(6));
  bm.allocate(seq);
  Sequence stale_copy = seq;  // still lists the blocks after the original frees them
  bm.deallocate(seq);
  EXPECT_ERROR_MENTIONS(bm.deallocate(stale_copy), "double free", "sequence 7");
  EXPECT_ERROR_MENTIONS(bm.deallocate(seq), "holds no cache blocks");
  EXPECT_EQ(bm.num_free_blocks(), 4);
  EXPECT_ERROR_MENTIONS(bm.allocate(stale_copy), "already holds");
}

TEST(BlockManager, OutOfBlocks) {
  BlockManager bm(4, 4);
  Sequence a(1, iota_tokens(12));  // 3 blocks
  Sequence b(2, iota_tokens(8, 100));  // 2 blocks, only 1 free
  bm.allocate(a);
  EXPECT_FALSE(bm.can_allocate(b));
  EXPECT_ERROR_MENTIONS(bm.allocate(b), "out of cache blocks", "needs 2", "1 are free");
  EXPECT_TRUE(b.block_table.empty());
  EXPECT_EQ(bm.num_free_blocks(), 1);
  bm.deallocate(a);
  EXPECT_TRUE(bm.can_allocate(b));
}

TEST(BlockManager, RepeatedPromptSharesFullBlocksAndNeverWritesThem) {
  BlockManager bm(16, 4);
  Sequence a(1, iota_tokens(10));
  prefill(bm, a);
  Sequence b(2, iota_tokens(10));
  ASSERT_TRUE(bm.can_allocate(b));
  bm.allocate(b);
  EXPECT_EQ(b.num_cached_tokens, 8);  // two full blocks hit; the last token's block is computed
  EXPECT_EQ(b.block_table[0], a.block_table[0]);
  EXPECT_EQ(b.block_table[1], a.block_table[1]);
  EXPECT_NE(b.block_table[2], a.block_table[2]);
  EXPECT_EQ(bm.ref_count(a.block_table[0]), 2);
  EXPECT_EQ(bm.ref_count(a.block_table[1]), 2);
  for (int64_t pos = b.num_cached_tokens; pos < b.num_tokens(); ++pos)  // the tokens b computes
    EXPECT_EQ(bm.ref_count(static_cast<int32_t>(b.slot(pos, 4) / 4)), 1) << "position " << pos;

  BlockManagerStats s = bm.stats();
  EXPECT_EQ(s.shared, 2);
  EXPECT_EQ(s.used, 4);
  EXPECT_EQ(s.prefix_queries, 4);  // 2 eligible blocks per 10-token prompt
  EXPECT_EQ(s.prefix_hits, 2);
  EXPECT_DOUBLE_EQ(s.hit_rate(), 0.5);
  EXPECT_EQ(s.tokens_stored, 12);  // 10 of a, plus b's own 2; shared blocks count once
  EXPECT_EQ(s.slots_reserved, 16);

  bm.deallocate(a);
  EXPECT_EQ(bm.ref_count(b.block_table[0]), 1);
  bm.deallocate(b);
  EXPECT_EQ(bm.num_free_blocks(), 16);
}

TEST(BlockManager, FreedBlocksStayFindableUntilReused) {
  BlockManager bm(4, 4);
  Sequence a(1, iota_tokens(9));  // blocks 0, 1, 2; freed last block first: free list [3, 2, 1, 0]
  prefill(bm, a);
  const std::vector<int32_t> a_blocks = a.block_table;
  bm.deallocate(a);
  Sequence other(2, iota_tokens(5, 500));  // takes 2 fresh blocks from the front: 3 and a's last block
  prefill(bm, other);
  EXPECT_EQ(other.block_table[0], 3);
  EXPECT_EQ(other.block_table[1], a_blocks[2]);
  Sequence again(3, iota_tokens(9));
  EXPECT_FALSE(bm.can_allocate(again));  // the 2 hits are free blocks too: it needs 3 and 2 are free
  bm.deallocate(other);
  ASSERT_TRUE(bm.can_allocate(again));
  bm.allocate(again);
  EXPECT_EQ(again.num_cached_tokens, 8);
  EXPECT_EQ(again.block_table[0], a_blocks[0]);
  EXPECT_EQ(again.block_table[1], a_blocks[1]);
  EXPECT_EQ(bm.stats().prefix_hits, 2);
}

TEST(BlockManager, PromptOfWholeBlocksRecomputesItsLastBlock) {
  BlockManager bm(8, 4);
  Sequence a(1, iota_tokens(8));
  prefill(bm, a);
  Sequence b(2, iota_tokens(8));
  bm.allocate(b);
  EXPECT_EQ(b.num_cached_tokens, 4);  // never all 8: the model must compute the last token for its logits
  EXPECT_EQ(b.block_table[0], a.block_table[0]);
  EXPECT_NE(b.block_table[1], a.block_table[1]);
  EXPECT_EQ(bm.ref_count(b.block_table[1]), 1);
}

TEST(BlockManager, OnlyWrittenBlocksAreShared) {
  BlockManager bm(8, 4);
  Sequence a(1, iota_tokens(10));
  bm.allocate(a);
  bm.mark_computed(a, 5);  // a chunked prefill wrote block 0 and part of block 1
  Sequence b(2, iota_tokens(10));
  bm.allocate(b);
  EXPECT_EQ(b.num_cached_tokens, 4);
  EXPECT_EQ(b.block_table[0], a.block_table[0]);
  EXPECT_NE(b.block_table[1], a.block_table[1]);
  EXPECT_ERROR_MENTIONS(bm.mark_computed(a, 6), "cannot advance from 5 by 6");
}

uint64_t hash_ignoring_tokens(uint64_t prev_hash, const int32_t*, int64_t) { return prev_hash * 31 + 7; }

TEST(BlockManager, HashCollisionIsCaughtByTokenCompare) {
  BlockManager bm(16, 4, true, &hash_ignoring_tokens);  // every chain of the same length collides
  Sequence a(1, iota_tokens(9));
  prefill(bm, a);
  Sequence b(2, iota_tokens(9, 100));  // same hashes, different tokens
  bm.allocate(b);
  EXPECT_EQ(b.num_cached_tokens, 0);
  EXPECT_EQ(bm.stats().prefix_hits, 0);
  EXPECT_EQ(bm.stats().shared, 0);
  for (size_t i = 0; i < b.block_table.size(); ++i) EXPECT_EQ(bm.ref_count(b.block_table[i]), 1);
  Sequence c(3, iota_tokens(9));  // a true repeat still hits through the same seam
  bm.allocate(c);
  EXPECT_EQ(c.num_cached_tokens, 8);
  EXPECT_EQ(bm.stats().prefix_hits, 2);
}

uint64_t hash_ignoring_prefix(uint64_t, const int32_t* tokens, int64_t n) { return hash_block_tokens(0, tokens, n); }

TEST(BlockManager, SameBlockTokensAfterADifferentPrefixAreNotShared) {
  BlockManager bm(16, 4, true, &hash_ignoring_prefix);  // a chain collision: the key forgets the prefix
  Sequence a(1, {1, 2, 3, 4, 5, 6, 7, 8, 9});
  prefill(bm, a);
  Sequence w(2, {11, 12, 13, 14, 99});
  prefill(bm, w);
  Sequence c(3, {11, 12, 13, 14, 5, 6, 7, 8, 9});  // block 1 has a's tokens but w's prefix
  bm.allocate(c);
  EXPECT_EQ(c.num_cached_tokens, 4);
  EXPECT_EQ(c.block_table[0], w.block_table[0]);
  EXPECT_NE(c.block_table[1], a.block_table[1]);
}

TEST(BlockManager, PrefixCachingOff) {
  BlockManager bm(8, 4, false);
  Sequence a(1, iota_tokens(9));
  prefill(bm, a);
  Sequence b(2, iota_tokens(9));
  bm.allocate(b);
  EXPECT_EQ(b.num_cached_tokens, 0);
  EXPECT_EQ(bm.stats().prefix_queries, 0);
  EXPECT_EQ(bm.stats().shared, 0);
}

TEST(BlockManager, AppendTakesABlockWhenTheLastTokenStartsOne) {
  BlockManager bm(3, 4);
  Sequence seq(1, iota_tokens(4));
  prefill(bm, seq);
  for (int32_t next = 100; seq.num_tokens() < 12; ++next) {  // decode: append, reserve its slot, write it
    seq.append_token(next);
    ASSERT_TRUE(bm.can_append(seq));
    bm.may_append(seq);
    EXPECT_EQ(static_cast<int64_t>(seq.block_table.size()), (seq.num_tokens() + 3) / 4);
    EXPECT_EQ(bm.ref_count(seq.block_table.back()), 1);
    bm.mark_computed(seq, 1);
    EXPECT_EQ(seq.num_cached_tokens, seq.num_tokens());
  }
  EXPECT_EQ(bm.num_free_blocks(), 0);
  EXPECT_EQ(bm.stats().tokens_stored, 12);
  seq.append_token(7);  // the 13th token needs a 4th block
  EXPECT_FALSE(bm.can_append(seq));
  EXPECT_ERROR_MENTIONS(bm.may_append(seq), "out of cache blocks");
}

TEST(BlockManager, DecodedBlocksBecomeFindable) {
  BlockManager bm(8, 4);
  Sequence a(1, iota_tokens(3));
  prefill(bm, a);
  for (int32_t next = 50; a.num_tokens() < 9; ++next) {
    a.append_token(next);
    bm.may_append(a);
    bm.mark_computed(a, 1);
  }
  Sequence b(2, a.token_ids());  // a's 9 tokens as a new prompt
  bm.allocate(b);
  EXPECT_EQ(b.num_cached_tokens, 8);
  EXPECT_EQ(b.block_table[1], a.block_table[1]);
}

}  // namespace
}  // namespace mlarun

// Real allocation and filling of the paged cache (see cache_measurement.h).
#include "bench/cache_measurement.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <unistd.h>
#include <vector>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "bench/baseline_attention.h"
#include "engine/block_manager.h"
#include "runtime/cache_pool.h"
#include "runtime/device.h"
#include "runtime/error.h"
#include "runtime/step_tensors.h"

namespace mlarun {

namespace {

// This process's resident memory in bytes (Linux /proc), after handing freed heap pages back; -1 elsewhere.
int64_t resident_bytes() {
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f) return -1;
  long long size = 0, resident = 0;
  int n = std::fscanf(f, "%lld %lld", &size, &resident);
  std::fclose(f);
  return n == 2 ? resident * int64_t(sysconf(_SC_PAGESIZE)) : -1;
}

uint8_t mark_of(int64_t seq_id) { return uint8_t(1 + seq_id % 251); }

}  // namespace

int64_t cache_row_width(const ModelConfig& c, const AttentionKind& kind, int64_t tp) {
  return kind.is_mla() ? c.latent_dim() : BaselineAttention::cache_width_for(c, kind, tp);
}

CacheMeasurement measure_cache_capacity(const ModelConfig& c, const CacheFootprint& f, int64_t budget_bytes,
                                        int64_t block_size, int64_t seq_len, Device device) {
  MLARUN_CHECK(budget_bytes > 0 && block_size >= 1 && seq_len >= 1 && f.dcp >= 1, "measure_cache_capacity: budget ",
               budget_bytes, " bytes, block size ", block_size, ", seq len ", seq_len, ", dcp ", f.dcp);
  auto start = std::chrono::steady_clock::now();
  CacheMeasurement m;
  m.device = device;
  m.budget_bytes = budget_bytes;
  m.block_size = block_size;
  m.dcp = f.dcp;
  m.row_width = cache_row_width(c, f.kind, f.tp);
  m.row_bytes = kv_row_bytes(c, f.kind, m.row_width, f.dtype);  // scales counted
  m.pool_dtype = cache_pool_dtype(f.dtype);
  const int64_t esize = int64_t(dtype_size(m.pool_dtype)), layers = c.n_layers, dcp = f.dcp;
  MLARUN_CHECK(m.row_bytes % esize == 0, "measure_cache_capacity: row of ", m.row_bytes, " bytes in ",
               dtype_name(m.pool_dtype));
  const int64_t pool_width = m.row_bytes / esize;  // elements per row: bf16 values, or the quantized row's bytes
  m.fill_len = f.kind.cached_tokens(seq_len);
  const int64_t virtual_block = block_size * dcp;  // the group's block, as the block manager sees it
  // The footprint's arithmetic: bytes per token per rank over the group's tokens in a virtual block.
  m.num_blocks_computed = int64_t(double(budget_bytes) / (f.bytes_per_token_per_rank() * double(virtual_block)));
  m.tokens_computed = m.num_blocks_computed * virtual_block;
  const int64_t block_bytes = block_size * m.row_bytes;  // one layer, one rank
  m.num_blocks = budget_bytes / (layers * block_bytes);
  if (m.num_blocks == 0) return m;

  const int64_t rss_before = device == Device::CPU ? resident_bytes() : -1;
  CachePool pool = CachePool::allocate(layers, m.num_blocks, block_size, pool_width, m.pool_dtype, device);  // zeroed
  m.pool_bytes = pool.bytes();
  if (rss_before >= 0) {
    int64_t rss_after = resident_bytes();
    if (rss_after >= 0) m.resident_bytes = rss_after - rss_before;
  }

  // Admit sequences until the block manager refuses; the last one takes whatever blocks are left.
  BlockManager blocks(m.num_blocks, virtual_block, /*enable_prefix_caching=*/false);
  std::vector<Sequence> seqs;
  for (int64_t id = 0;; ++id) {
    int64_t room = blocks.num_free_blocks() * virtual_block;
    Sequence seq(id, std::vector<int32_t>(size_t(std::max<int64_t>(1, std::min(m.fill_len, room))), 7));
    if (!blocks.can_allocate(seq)) break;
    blocks.allocate(seq);
    seqs.push_back(std::move(seq));
  }
  m.sequences = int64_t(seqs.size());
  m.tokens = blocks.stats().tokens_stored;

  // Each rank of the group in turn, through the runtime's own placement (runtime/step_tensors.h): within virtual
  // block b of a sequence the rank holds context_parallel_local_len of its tokens, contiguous from 0 in its block
  // block_table[b]; context_parallel_local_slot maps a token's virtual slot to the rank's slot, or -1 when another
  // rank stores it. Every position of every sequence is asked of every rank, so a token the placement gave to no
  // rank or to two is caught.
  std::vector<uint8_t> pattern(static_cast<size_t>(block_bytes));
  std::vector<int64_t> good(size_t(m.num_blocks * block_size));
  for (int64_t rank = 0; rank < dcp; ++rank) {
    const ContextParallel cp{dcp, rank};
    for (const Sequence& seq : seqs) {  // write each sequence's mark into this rank's slots through its block table
      std::fill(pattern.begin(), pattern.end(), mark_of(seq.id()));
      for (size_t b = 0; b < seq.block_table.size(); ++b) {
        int64_t in_block = std::min(virtual_block, seq.num_tokens() - int64_t(b) * virtual_block);
        for (Tensor& layer : pool.layers)
          copy_bytes(static_cast<char*>(layer.raw()) + seq.block_table[b] * block_bytes, device, pattern.data(),
                     Device::CPU, size_t(context_parallel_local_len(in_block, cp) * m.row_bytes));
      }
    }
    // Read the marks back: a token counts when its slot holds its owner's mark in every layer.
    std::fill(good.begin(), good.end(), 0);
    for (const Tensor& layer : pool.layers) {
      Tensor host = device == Device::CPU ? layer : layer.to(Device::CPU);
      const uint8_t* bytes = static_cast<const uint8_t*>(host.raw());
      for (const Sequence& seq : seqs)
        for (int64_t p = 0; p < seq.num_tokens(); ++p) {
          int64_t slot = context_parallel_local_slot(seq.slot(p, virtual_block), block_size, cp);
          if (slot < 0) continue;  // another rank's token
          good[size_t(slot)] += bytes[slot * m.row_bytes] == mark_of(seq.id()) &&
                                bytes[(slot + 1) * m.row_bytes - 1] == mark_of(seq.id());
        }
    }
    for (int64_t g : good) m.tokens_verified += g == layers;
  }
  m.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return m;
}

}  // namespace mlarun

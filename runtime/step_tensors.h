// StepTensors: one model step's index data as tensors on the model's device, built once per step from the
// ForwardBatch (host vectors) so that no op uploads an index list of its own. On the GPU the arrays are packed
// into one host staging buffer (page-locked, runtime/device.h HostStaging) and leave in one asynchronous copy;
// every tensor here is a typed view of that one device allocation. On the CPU they are views of one host buffer
// and nothing is copied. Values (slots, block ids) are checked here, on the host, before they leave: ops that
// take these tensors check shapes and dtypes only.
//
// Besides the step-wide arrays, the sequences are split by MLA path (absorbed decode vs naive prefill, the rule
// of uses_absorbed_path) into two StepParts, each with the layouts its attention kernels read (cu_seqlens, block
// tables, per-row key counts, the slots of every context row): the attention metadata vLLM's MLA backends build
// once per step and share across layers.
//
// Under decode context parallelism (ContextParallel, docs/layouts.md §2.6) the batch speaks of the group's
// virtual blocks (block_size * N tokens, N = the group size) and virtual slots; build() turns them into this
// rank's view: its own slots (the tokens p with p % N == rank, at local position p / N, in its physical block of
// the same id), its own key counts on the absorbed path, and on the naive path the padded slots of its rows plus
// where each context row lands once the group has all-gathered them.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "runtime/device.h"
#include "runtime/forward_batch.h"
#include "runtime/tensor.h"

namespace mlarun {

// This rank's place in its decode-context-parallel group: `size` ranks share each sequence's cache, token p on
// rank p % size. size 1: no sharing.
struct ContextParallel {
  int64_t size = 1;
  int64_t rank = 0;
  bool on() const { return size > 1; }
};
// Tokens of the context positions [0, len) that rank cp.rank stores: those with p % size == rank.
int64_t context_parallel_local_len(int64_t len, const ContextParallel& cp);
// This rank's physical slot for a virtual slot (block * block_size * size + offset) of the group's cache, or -1
// when another rank of the group stores that token (or the virtual slot is -1). block_size: per rank.
int64_t context_parallel_local_slot(int64_t virtual_slot, int64_t block_size, const ContextParallel& cp);

// The sequences of one attention path, renumbered 0..num_seqs-1 in batch order.
struct StepPart {
  std::vector<int64_t> seqs;  // indices into ForwardBatch::sequences
  int64_t num_tokens = 0;     // query rows (new tokens) of these sequences
  int64_t max_q = 0;          // the most new tokens of one sequence
  int64_t total_k = 0;        // context rows (start_pos + num_tokens) summed over the sequences
  int64_t max_blocks = 0;     // row length of block_tables (at least 1)
  bool whole_step = false;    // the query rows are exactly the step's rows 0..T-1, in order
  std::vector<int32_t> cu_seqlens_q_host, cu_seqlens_k_host;  // [num_seqs + 1], host copies
  Tensor rows;               // i64 [num_tokens]: the flat step row of each query row
  Tensor block_tables;       // i32 [num_seqs, max_blocks]; entries past a sequence's blocks are 0
  Tensor seq_lens;           // i32 [num_seqs]: context rows (new ones included)
  Tensor cu_seqlens_q;       // i32 [num_seqs + 1]
  Tensor cu_seqlens_k;       // i32 [num_seqs + 1]
  Tensor token_table_start;  // i32 [num_tokens]: where the row's block table starts in block_tables (flat)
  Tensor token_keys;         // i32 [num_tokens]: cached rows the query sees (its position + 1)
  Tensor kv_slots;           // i64 [total_k]: cache slot of every context row, sequence after sequence
  // Under decode context parallelism (dcp_size > 1) the absorbed part's seq_lens, cu_seqlens_k, token_keys and
  // total_k count this rank's own rows (block tables are the group's, whose ids are this rank's blocks too). The
  // naive part keeps the whole context's counts; its kv_slots then list this rank's rows of each sequence,
  // ceil(ctx / dcp_size) per sequence (padded with a valid slot), and context_rows i64 [total_k] says which row
  // of the group's all-gather ([padded rows * dcp_size], rank-interleaved) is each context row.
  int64_t dcp_size = 1;
  Tensor context_rows;
  // mla_decode's view of an absorbed part in which a sequence has more new tokens than that kernel takes
  // (kDecodeViewMaxQ; prefill chunks sent down the absorbed path): each sequence becomes consecutive
  // pseudo-sequences of at most kDecodeViewMaxQ query rows, pseudo-sequence g's context ending with its last row
  // (seq_len = start_pos + that row's index + 1), so every row keeps its causal window, all of them reading the
  // sequence's block table. The rows keep their order, so outputs need no permutation. Built without decode
  // context parallelism only; decode_view_seqs is 0 when every sequence fits as it is.
  static constexpr int64_t kDecodeViewMaxQ = 4;  // kernels/cuda/mla_decode kMaxQueriesPerSeq (asserted there)
  int64_t decode_view_seqs = 0;
  Tensor decode_view_tables;    // i32 [decode_view_seqs, max_blocks]
  Tensor decode_view_seq_lens;  // i32 [decode_view_seqs]
  Tensor decode_view_cu_q;      // i32 [decode_view_seqs + 1]
  int64_t num_seqs() const { return int64_t(seqs.size()); }
  bool empty() const { return seqs.empty(); }
};

// The device buffer of a fixed step layout (StepTensors::build_fixed) and the layout it was first packed in.
struct FixedStepBuffer {
  Tensor bytes;
  std::vector<std::pair<size_t, Shape>> layout;  // each array's offset and shape
};

struct StepTensors {
  Device device = Device::CPU;
  int64_t num_tokens = 0;
  int64_t block_size = 0;  // tokens per physical block of this rank
  ContextParallel dcp;     // the rank's decode-context-parallel group (size 1: none)
  Tensor token_ids;     // i32 [T]
  Tensor positions;     // i64 [T]
  Tensor slot_mapping;  // i64 [T]: this rank's slot; -1: do not write (or another rank of the DCP group does)
  Tensor logit_rows;    // i64 [R]
  Tensor block_tables;  // i32 [S, max_blocks] (max_blocks >= 1), zero-padded
  Tensor seq_lens;      // i32 [S] (whole contexts, also under DCP)
  Tensor cu_seqlens_q;  // i32 [S + 1]
  Tensor cu_seqlens_k;  // i32 [S + 1]
  StepPart absorbed;    // sequences on MLA's absorbed path (decode)
  StepPart naive;       // sequences on the naive path (prefill chunks)

  // Checks `batch` against a cache of `num_blocks` blocks of `block_size` tokens (every slot and every block a
  // sequence's context needs lies inside it), then lays it out on `device`. `staging` (kept by the caller across
  // steps) holds the host bytes on the GPU; without one a temporary buffer is used. Under decode context
  // parallelism the batch's blocks and slots are the group's (block_size * cp.size tokens a block).
  static StepTensors build(const ForwardBatch& batch, Device device, int64_t block_size, int64_t num_blocks,
                           HostStaging* staging = nullptr, ContextParallel cp = {});
  // The same in a layout fixed by the batch's counts alone, for a CUDA graph that replays the step
  // (engine/decode_graphs.h): every block table padded to `table_blocks` columns (a sequence needing more is an
  // error), and the packed bytes written into `buffer`: allocated by the first call, then reused, so every view
  // points at the same address each step. A batch whose arrays would lie otherwise (other sequence, token or
  // logit-row counts) is an error. No decode context parallelism.
  static StepTensors build_fixed(const ForwardBatch& batch, Device device, int64_t block_size, int64_t num_blocks,
                                 int64_t table_blocks, FixedStepBuffer& buffer, HostStaging* staging = nullptr);

 private:
  static StepTensors build_impl(const ForwardBatch& batch, Device device, int64_t block_size, int64_t num_blocks,
                                HostStaging* staging, ContextParallel cp, int64_t min_blocks, FixedStepBuffer* into);
};

// MLA's path for one sequence: absorbed when the batch asks for it, or (Auto) when the batch's rule says so.
bool uses_absorbed_path(const ForwardBatch& batch, const BatchSequence& s);

}  // namespace mlarun

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
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/device.h"
#include "runtime/forward_batch.h"
#include "runtime/tensor.h"

namespace mlarun {

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
  int64_t num_seqs() const { return int64_t(seqs.size()); }
  bool empty() const { return seqs.empty(); }
};

struct StepTensors {
  Device device = Device::CPU;
  int64_t num_tokens = 0;
  int64_t block_size = 0;
  Tensor token_ids;     // i32 [T]
  Tensor positions;     // i64 [T]
  Tensor slot_mapping;  // i64 [T]; -1: do not write
  Tensor logit_rows;    // i64 [R]
  Tensor block_tables;  // i32 [S, max_blocks] (max_blocks >= 1), zero-padded
  Tensor seq_lens;      // i32 [S]
  Tensor cu_seqlens_q;  // i32 [S + 1]
  Tensor cu_seqlens_k;  // i32 [S + 1]
  StepPart absorbed;    // sequences on MLA's absorbed path (decode)
  StepPart naive;       // sequences on the naive path (prefill chunks)

  // Checks `batch` against a cache of `num_blocks` blocks of `block_size` tokens (every slot and every block a
  // sequence's context needs lies inside it), then lays it out on `device`. `staging` (kept by the caller across
  // steps) holds the host bytes on the GPU; without one a temporary buffer is used.
  static StepTensors build(const ForwardBatch& batch, Device device, int64_t block_size, int64_t num_blocks,
                           HostStaging* staging = nullptr);
};

// MLA's path rule: absorbed when the batch asks for it, or (Auto) for a sequence with one new token.
bool uses_absorbed_path(const ForwardBatch& batch, const BatchSequence& s);

}  // namespace mlarun

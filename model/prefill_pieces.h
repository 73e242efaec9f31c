// Chunked naive prefill over a long cached prefix (docs/model.md §2.4): a step's prefill context rows, laid out
// sequence after sequence as StepPart::kv_slots lists them, cut into pieces of at most `piece_rows` rows, wherever
// the cuts fall. Each piece is up-projected to K/V on its own and attended, as one varlen batch with explicit
// causal offsets (ops::OffsetVarlen), by the query rows of the sequences it holds rows of: a sequence's keys in a
// piece are positions [a, b) of its context, and its query at position start_pos + i sees the piece's key j when
// a + j <= start_pos + i, so its offset is start_pos - a. The partial results merge exactly by log-sum-exp
// (ops::merge_attention_partials), so K/V never exist for more than `piece_rows` rows at once; on the GPU the
// pieces attend through flash_prefill like the unpieced step.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/op_types.h"
#include "runtime/step_tensors.h"

namespace mlarun {

struct PrefillPiece {
  int64_t first_row = 0;  // context rows [first_row, first_row + num_rows) of the part (kv_slots order)
  int64_t num_rows = 0;
  // The query rows [first_query, first_query + num_queries) of the part: those of the sequences with rows here.
  int64_t first_query = 0;
  int64_t num_queries = 0;
  // Those sequences as a varlen batch: query rows from first_query, key rows from first_row, their offsets.
  ops::OffsetVarlen layout;
};

// The pieces of `part` (prefill sequences with cu_seqlens on the host) for a budget of `piece_rows` context rows;
// none when the whole context fits (the unpieced path). The layouts' device arrays land on `device` in one upload.
std::vector<PrefillPiece> plan_prefill_pieces(const StepPart& part, int64_t piece_rows, Device device);

}  // namespace mlarun

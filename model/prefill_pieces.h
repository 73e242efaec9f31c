// Chunked naive prefill over a long cached prefix (docs/model.md §2.3): a step's prefill context rows, laid out
// sequence after sequence as StepPart::kv_slots lists them, cut into pieces of at most `piece_rows` rows, wherever
// the cuts fall. Each piece is up-projected to K/V on its own and every query row of the step attends the part of
// the piece it may see, which is one contiguous range of the piece's rows (its sequence's keys up to its own
// position, bottom-right causal, clipped to the piece) or nothing. The partial results merge exactly by
// log-sum-exp (ops::merge_attention_partials), so K/V never exist for more than `piece_rows` rows at once.
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/step_tensors.h"

namespace mlarun {

struct PrefillPiece {
  int64_t first_row = 0;  // context rows [first_row, first_row + num_rows) of the part (kv_slots order)
  int64_t num_rows = 0;
  Tensor key_begin;  // i32 [part.num_tokens] on the step's device: each query row's first visible row of the piece
  Tensor key_count;  // i32 [part.num_tokens]: how many rows of the piece it sees from there (0: none)
};

// The pieces of `part` (prefill sequences with cu_seqlens on the host) for a budget of `piece_rows` context rows;
// none when the whole context fits (the unpieced path). Index tensors land on `device`, in one upload.
std::vector<PrefillPiece> plan_prefill_pieces(const StepPart& part, int64_t piece_rows, Device device);

}  // namespace mlarun

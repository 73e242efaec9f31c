// The pieces of a chunked naive prefill (see prefill_pieces.h).
#include "model/prefill_pieces.h"

#include <algorithm>

#include "runtime/error.h"

namespace mlarun {

std::vector<PrefillPiece> plan_prefill_pieces(const StepPart& part, int64_t piece_rows, Device device) {
  MLARUN_CHECK(piece_rows > 0, "prefill context pieces of ", piece_rows, " rows");
  if (part.empty() || part.total_k <= piece_rows) return {};
  const int64_t T = part.num_tokens, count = (part.total_k + piece_rows - 1) / piece_rows;
  // Every piece's two arrays in one tensor, one copy to the device; the pieces hold views of it.
  Tensor host = Tensor::zeros({count * 2 * T}, DType::I32);
  int32_t* ranges = host.data<int32_t>();
  std::vector<PrefillPiece> pieces(static_cast<size_t>(count));
  for (int64_t p = 0; p < count; ++p) {
    const int64_t g0 = p * piece_rows, g1 = std::min(part.total_k, g0 + piece_rows);
    pieces[size_t(p)].first_row = g0;
    pieces[size_t(p)].num_rows = g1 - g0;
    int32_t* begin = ranges + p * 2 * T;
    int32_t* seen = begin + T;
    for (int64_t j = 0; j < part.num_seqs(); ++j) {
      const int64_t q0 = part.cu_seqlens_q_host[size_t(j)], n = part.cu_seqlens_q_host[size_t(j + 1)] - q0;
      const int64_t k0 = part.cu_seqlens_k_host[size_t(j)], ctx = part.cu_seqlens_k_host[size_t(j + 1)] - k0;
      if (k0 + ctx <= g0 || k0 >= g1) continue;  // no row of this sequence in the piece
      const int64_t first = std::max(k0, g0);
      for (int64_t i = 0; i < n; ++i) {
        const int64_t last = std::min(k0 + ctx - n + i + 1, g1);  // query i sees its context rows 0..ctx - n + i
        begin[q0 + i] = int32_t(first - g0);
        seen[q0 + i] = int32_t(std::max<int64_t>(0, last - first));
      }
    }
  }
  const Tensor placed = device == Device::CPU ? host : host.to(device);
  for (int64_t p = 0; p < count; ++p) {
    pieces[size_t(p)].key_begin = placed.rows(p * 2 * T, T);
    pieces[size_t(p)].key_count = placed.rows(p * 2 * T + T, T);
  }
  return pieces;
}

}  // namespace mlarun

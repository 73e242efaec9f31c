// The pieces of a chunked naive prefill (see prefill_pieces.h).
#include "model/prefill_pieces.h"

#include <algorithm>

#include "runtime/error.h"

namespace mlarun {

std::vector<PrefillPiece> plan_prefill_pieces(const StepPart& part, int64_t piece_rows, Device device) {
  MLARUN_CHECK(piece_rows > 0, "prefill context pieces of ", piece_rows, " rows");
  if (part.empty() || part.total_k <= piece_rows) return {};
  const int64_t count = (part.total_k + piece_rows - 1) / piece_rows;
  std::vector<PrefillPiece> pieces(static_cast<size_t>(count));
  int64_t values = 0;  // every piece's three arrays, laid end to end
  for (int64_t p = 0; p < count; ++p) {
    PrefillPiece& piece = pieces[size_t(p)];
    const int64_t g0 = p * piece_rows, g1 = std::min(part.total_k, g0 + piece_rows);
    piece.first_row = g0;
    piece.num_rows = g1 - g0;
    ops::OffsetVarlen& l = piece.layout;
    for (int64_t j = 0; j < part.num_seqs(); ++j) {
      const int64_t q0 = part.cu_seqlens_q_host[size_t(j)], n = part.cu_seqlens_q_host[size_t(j + 1)] - q0;
      const int64_t k0 = part.cu_seqlens_k_host[size_t(j)], ctx = part.cu_seqlens_k_host[size_t(j + 1)] - k0;
      if (k0 + ctx <= g0 || k0 >= g1) continue;  // no row of this sequence in the piece
      const int64_t first = std::max(k0, g0), last = std::min(k0 + ctx, g1);  // its rows [first, last) here
      if (l.cu_seqlens_q_host.empty()) {
        piece.first_query = q0;
        l.cu_seqlens_q_host.push_back(0);
        l.cu_seqlens_k_host.push_back(0);
      }
      l.cu_seqlens_q_host.push_back(int32_t(q0 + n - piece.first_query));
      l.cu_seqlens_k_host.push_back(int32_t(last - g0));
      // Its new tokens start at context position ctx - n; its first key here is position first - k0.
      l.causal_offset_host.push_back(int32_t((ctx - n) - (first - k0)));
    }
    piece.num_queries = l.cu_seqlens_q_host.back();
    values += 2 * int64_t(l.cu_seqlens_q_host.size()) + l.num_seqs();
  }
  // One host tensor, one copy to the device; each layout's tensors are views of it.
  Tensor host = Tensor::empty({values}, DType::I32);
  int64_t at = 0;
  auto put = [&](const std::vector<int32_t>& list) {
    std::copy(list.begin(), list.end(), host.data<int32_t>() + at);
    at += int64_t(list.size());
  };
  for (const PrefillPiece& piece : pieces) {
    put(piece.layout.cu_seqlens_q_host);
    put(piece.layout.cu_seqlens_k_host);
    put(piece.layout.causal_offset_host);
  }
  const Tensor placed = device == Device::CPU ? host : host.to(device);
  at = 0;
  auto view = [&](int64_t n) {
    const Tensor t = placed.rows(at, n);
    at += n;
    return t;
  };
  for (PrefillPiece& piece : pieces) {
    ops::OffsetVarlen& l = piece.layout;
    l.cu_seqlens_q = view(int64_t(l.cu_seqlens_q_host.size()));
    l.cu_seqlens_k = view(int64_t(l.cu_seqlens_k_host.size()));
    l.causal_offset = view(l.num_seqs());
  }
  return pieces;
}

}  // namespace mlarun

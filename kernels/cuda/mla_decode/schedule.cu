// The MLA decode scheduler: cuts every sequence's cached tokens into contiguous chunks ("pieces") and hands each
// of num_parts CTA columns an equal amount of work, measured in kBlockN-token tiles plus a fixed cost per piece
// (FlashMLA's idea: balance by work, not by request; one long sequence spans several SMs, short ones share one).
// It runs on the device from seq_lens and cu_seqlens_q, so a step needs no host round trip and the launch can be
// captured in a CUDA graph. It also checks those values (the host never sees them): a sequence found invalid gets
// no pieces, a status code, and NaN outputs from the combine. Offsets that cannot place the rows at all (not
// starting at 0, not ending at num_tokens, going down) make every sequence invalid: then no row is trustworthy.
//
// Balance argument: with payload = ceil(total / P) + 2F (F = kFixedCostTiles), a part is closed only when it cannot
// take one more tile, i.e. holding at least payload - F; at most F of that is the extra cost of a continued
// (split) sequence, so each closed part consumes at least ceil(total / P) of the total and at most P parts are
// ever opened. Every part holds at most payload. The last part takes any remainder anyway, as a safety net.
#include <cuda_runtime.h>

#include <cuda_runtime_api.h>

#include "runtime/cuda_check.h"
#include "kernels/cuda/mla_decode/mla_decode.h"

namespace mlarun::ops::cuda {
namespace {

using mla::kBlockN;
using mla::kFixedCostTiles;
using mla::kMaxBatch;
using mla::kSchedThreads;
using Code = MlaDecodeStatus::Code;

struct ScheduleArgs {
  const int32_t* seq_lens;      // [batch]
  const int32_t* cu_seqlens_q;  // [batch + 1]
  int32_t* status;              // [4]
  int32_t* part_piece_begin;    // [num_parts + 1]
  int32_t* seq_piece_begin;     // [batch + 1]
  int32_t* seq_status;          // [batch]
  int4* pieces;                 // [max_pieces]
  int batch, num_tokens, max_q, num_parts, max_pieces;
  int64_t max_seq_len;          // max_blocks_per_seq * block_size
};

__device__ void report(int32_t* status, int32_t code, int32_t sequence, int32_t value) {
  if (atomicCAS(status, 0, code) == 0) {
    status[1] = sequence;
    status[2] = value;
  }
}

__global__ void __launch_bounds__(kSchedThreads) mla_decode_schedule_kernel(const ScheduleArgs a) {
  __shared__ int32_t tiles_s[kMaxBatch];  // tiles of each sequence, 0 when empty or invalid
  __shared__ unsigned long long total_s;  // sum over non-empty sequences of tiles + kFixedCostTiles (int64:
                                          // up to kMaxBatch * kMaxSeqLen / kBlockN, past int32)
  __shared__ int32_t layout_bad_s;        // cu_seqlens_q cannot place the rows: every sequence is invalid
  if (threadIdx.x == 0) {
    a.status[0] = a.status[1] = a.status[2] = a.status[3] = 0;
    total_s = 0;
    layout_bad_s = 0;
  }
  __syncthreads();

  // 1. Check every sequence and measure its work, in parallel (thread t owns sequences t, t + kSchedThreads, ..).
  int32_t my_layout_bad = 0;
  for (int b = threadIdx.x; b < a.batch; b += kSchedThreads) {
    const int32_t q0 = a.cu_seqlens_q[b], q1 = a.cu_seqlens_q[b + 1], len = a.seq_lens[b];
    int32_t code = Code::kOk, value = 0;
    if ((b == 0 && q0 != 0) || (b == a.batch - 1 && q1 != a.num_tokens) || q0 < 0 || q1 > a.num_tokens) {
      code = Code::kBadCuSeqlensQ;
      value = (b == 0 && q0 != 0) || q0 < 0 ? q0 : q1;
    } else if (q1 - q0 < 1 || q1 - q0 > a.max_q) {
      code = Code::kBadQueryCount;
      value = q1 - q0;
    } else if (len < 0 || len > a.max_seq_len) {
      code = Code::kBadSeqLen;
      value = len;
    }
    // Rows of sequence b are [q0, q1) x H only if the offsets start at 0, end at num_tokens and never go down.
    if (code == Code::kBadCuSeqlensQ || q1 < q0) my_layout_bad = 1;
    a.seq_status[b] = code;
    if (code != Code::kOk) report(a.status, code, b, value);
    tiles_s[b] = code == Code::kOk ? (len + kBlockN - 1) / kBlockN : 0;
  }
  if (my_layout_bad) atomicOr(&layout_bad_s, 1);
  __syncthreads();
  const bool layout_bad = layout_bad_s != 0;
  long long my_total = 0;
  for (int b = threadIdx.x; b < a.batch; b += kSchedThreads) {
    if (layout_bad) {  // the combine then writes NaN over every output row (status[3])
      if (a.seq_status[b] == Code::kOk) a.seq_status[b] = Code::kBadCuSeqlensQ;  // this thread wrote it above
      tiles_s[b] = 0;
    }
    if (tiles_s[b] > 0) my_total += tiles_s[b] + kFixedCostTiles;
  }
  if (my_total > 0) atomicAdd(&total_s, static_cast<unsigned long long>(my_total));
  __syncthreads();
  if (threadIdx.x != 0) return;
  if (layout_bad) a.status[3] = 1;

  // 2. Greedy packing in sequence order (one thread: batch + num_parts steps over shared memory). Work counts
  // are int64; a piece's tile range stays int32 (at most kMaxSeqLen / kBlockN).
  const int parts = a.num_parts;
  const long long payload = (static_cast<long long>(total_s) + parts - 1) / parts + 2 * kFixedCostTiles;
  int part = 0, piece = 0;
  long long used = 0;  // work already in `part`
  a.part_piece_begin[0] = 0;
  for (int b = 0; b < a.batch; ++b) {
    a.seq_piece_begin[b] = piece;
    const int32_t tiles = tiles_s[b];
    for (int32_t t = 0; t < tiles;) {
      if (used > 0 && payload - used - kFixedCostTiles < 1 && part + 1 < parts) {
        ++part;  // this part cannot take another tile: open the next one
        used = 0;
        a.part_piece_begin[part] = piece;
      }
      const long long room = max(payload - used - kFixedCostTiles, 1ll);
      const int32_t take = part + 1 == parts ? tiles - t : int32_t(min(static_cast<long long>(tiles - t), room));
      if (piece == a.max_pieces) {  // impossible by the bound in the layout; never write past the array
        report(a.status, Code::kTooManyPieces, b, piece);
        a.seq_status[b] = Code::kTooManyPieces;
        break;
      }
      a.pieces[piece++] = make_int4(b, t, t + take, 0);
      used += take + kFixedCostTiles;
      t += take;
    }
  }
  a.seq_piece_begin[a.batch] = piece;
  for (int p = part + 1; p <= parts; ++p) a.part_piece_begin[p] = piece;
}

}  // namespace

namespace mla {

void launch_mla_decode_schedule(const MlaDecodeParams& p, const mla::WorkspaceLayout& w, cudaStream_t stream) {
  auto* base = static_cast<unsigned char*>(p.workspace);
  ScheduleArgs a;
  a.seq_lens = p.seq_lens;
  a.cu_seqlens_q = p.cu_seqlens_q;
  a.status = reinterpret_cast<int32_t*>(base + w.status);
  a.part_piece_begin = reinterpret_cast<int32_t*>(base + w.part_piece_begin);
  a.seq_piece_begin = reinterpret_cast<int32_t*>(base + w.seq_piece_begin);
  a.seq_status = reinterpret_cast<int32_t*>(base + w.seq_status);
  a.pieces = reinterpret_cast<int4*>(base + w.pieces);
  a.batch = p.batch;
  a.num_tokens = p.num_tokens;
  a.max_q = p.max_q_per_seq;
  a.num_parts = int(w.num_parts);
  a.max_pieces = int(w.max_pieces);
  a.max_seq_len = int64_t(p.max_blocks_per_seq) * p.block_size;
  mla_decode_schedule_kernel<<<1, kSchedThreads, 0, stream>>>(a);
  MLARUN_CUDA_CHECK(cudaGetLastError());
}

}  // namespace mla
}  // namespace mlarun::ops::cuda

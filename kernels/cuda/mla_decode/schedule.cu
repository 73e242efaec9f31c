// The MLA decode scheduler: cuts every sequence's cached tokens into contiguous chunks ("pieces") and hands each
// of num_parts CTA columns an equal amount of work, measured in kBlockN-token tiles plus a fixed cost per piece
// (FlashMLA's idea: balance by work, not by request; one long sequence spans several SMs, short ones share one).
// It runs on the device from seq_lens and cu_seqlens_q, so a step needs no host round trip and the launch can be
// captured in a CUDA graph. It also checks those values (the host never sees them): a sequence found invalid gets
// no pieces, a status code, and NaN outputs from the combine. Offsets that cannot place the rows at all (not
// starting at 0, not ending at num_tokens, going down) make every sequence invalid: then no row is trustworthy.
//
// The work is laid on one line and cut into equal parts (schedule_plan.h, which states and the CPU test checks
// the balance and the piece bound): two block-wide prefix sums (CUB) give each sequence its start on the line and
// its first piece, then every thread places its own sequences. A greedy packing by one thread took 45 us for
// 128 sequences on an H100 (8% of the TP 8 shape's whole call); the plan is the same for every layer of a step.
#include <cuda_runtime.h>

#include <cub/block/block_scan.cuh>

#include <cuda_runtime_api.h>

#include "runtime/cuda_check.h"
#include "kernels/cuda/mla_decode/mla_decode.h"
#include "kernels/cuda/mla_decode/schedule_plan.h"

namespace mlarun::ops::cuda {
namespace {

using mla::kBlockN;
using mla::kMaxBatch;
using mla::kSchedThreads;
using Code = MlaDecodeStatus::Code;
namespace plan = mla::plan;

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
  using Scan = cub::BlockScan<long long, kSchedThreads>;
  __shared__ typename Scan::TempStorage scan_s;
  __shared__ int32_t tiles_s[kMaxBatch];  // tiles of each sequence, 0 when empty or invalid
  __shared__ int32_t layout_bad_s;        // cu_seqlens_q cannot place the rows: every sequence is invalid
  if (threadIdx.x == 0) {
    a.status[0] = a.status[1] = a.status[2] = a.status[3] = 0;
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
  if (layout_bad) {  // the combine then writes NaN over every output row (status[3])
    for (int b = threadIdx.x; b < a.batch; b += kSchedThreads) {
      if (a.seq_status[b] == Code::kOk) a.seq_status[b] = Code::kBadCuSeqlensQ;  // this thread wrote it above
      tiles_s[b] = 0;
    }
    if (threadIdx.x == 0) a.status[3] = 1;
  }
  __syncthreads();

  // 2. Each thread takes a run of consecutive sequences; a prefix sum of the runs' costs gives each run's start
  // on the line (int64: up to kMaxBatch * kMaxSeqLen / kBlockN units) and the total.
  const int per_thread = (a.batch + kSchedThreads - 1) / kSchedThreads;
  const int b0 = min(int(threadIdx.x) * per_thread, a.batch), b1 = min(b0 + per_thread, a.batch);
  long long cost = 0;
  for (int b = b0; b < b1; ++b) cost += plan::seq_cost(tiles_s[b]);
  long long start = 0, total = 0;
  Scan(scan_s).ExclusiveSum(cost, start, total);
  const int64_t units = plan::part_units(total, a.num_parts);

  // 3. A second prefix sum numbers the pieces; each thread writes those of its sequences, tagged with their part.
  long long count = 0;
  for (long long b = b0, at = start; b < b1; ++b) {
    count += plan::seq_pieces(at, tiles_s[b], units).count;
    at += plan::seq_cost(tiles_s[b]);
  }
  long long piece = 0, num_pieces = 0;
  __syncthreads();  // the scan storage is reused
  Scan(scan_s).ExclusiveSum(count, piece, num_pieces);
  for (int b = b0; b < b1; ++b) {
    a.seq_piece_begin[b] = int32_t(min(piece, static_cast<long long>(a.max_pieces)));
    const plan::SeqPieces sp = plan::seq_pieces(start, tiles_s[b], units);
    for (int k = 0; k < sp.count; ++k, ++piece) {
      if (piece >= a.max_pieces) {  // impossible by the bound in schedule_plan.h; never write past the array
        report(a.status, Code::kTooManyPieces, b, int32_t(piece));
        a.seq_status[b] = Code::kTooManyPieces;
        break;
      }
      const plan::PieceTiles t = plan::piece_tiles(start, tiles_s[b], units, sp.first_part + k);
      a.pieces[piece] = make_int4(b, t.begin, t.end, sp.first_part + k);
    }
    start += plan::seq_cost(tiles_s[b]);
  }
  const int n = int(min(num_pieces, static_cast<long long>(a.max_pieces)));
  if (threadIdx.x == 0) a.seq_piece_begin[a.batch] = n;
  __syncthreads();  // every piece written (a barrier orders the block's global writes too)

  // 4. Part p's pieces begin at the first piece of a part >= p: each piece fills the parts after its predecessor's.
  for (int i = threadIdx.x; i < n; i += kSchedThreads) {
    const int part = a.pieces[i].w, before = i > 0 ? a.pieces[i - 1].w : -1;
    for (int p = before + 1; p <= part; ++p) a.part_piece_begin[p] = i;
  }
  if (threadIdx.x == 0)
    for (int p = n > 0 ? a.pieces[n - 1].w + 1 : 0; p <= a.num_parts; ++p) a.part_piece_begin[p] = n;
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

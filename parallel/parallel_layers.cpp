// Parallel linear layers and vocab-parallel embedding/head (see parallel_layers.h).
#include "parallel/parallel_layers.h"

#include <iostream>

#include "kernels/ops.h"
#include "runtime/error.h"

namespace mlarun {

void SingleCommunicator::abort_all(const std::string& message, int code) {
  std::cerr << "error: " << message << "\n";
  std::exit(code);
}

std::unique_ptr<Communicator> Communicator::split(int color, int key) {
  fail("the ", backend(), " communicator cannot split into groups (color ", color, ", key ", key, ")");
}

ShardRange shard_range(int64_t n, const Communicator& comm, const std::string& what) {
  const int64_t world = comm.world_size();
  if (n % world != 0) fail("cannot split ", what, " (", n, ") over ", world, " ranks: not divisible");
  int64_t part = n / world;
  return {comm.rank() * part, (comm.rank() + 1) * part};
}

ShardRange shard_range(int64_t n, int64_t part, int64_t parts, const std::string& what) {
  if (parts < 1 || part < 0 || part >= parts || n % parts != 0)
    fail("cannot split ", what, " (", n, ") into ", parts, " parts (part ", part, "): not divisible");
  const int64_t size = n / parts;
  return {part * size, (part + 1) * size};
}

namespace {
void check_shape(const WeightSource& ckpt, const std::string& name, const Shape& expected) {
  if (!ckpt.contains(name)) fail(ckpt.source_name(), ": checkpoint has no tensor '", name, "'");
  Shape actual = ckpt.shape_of(name);
  if (actual != expected)
    fail(ckpt.source_name(), ": tensor '", name, "' has shape ", shape_str(actual), ", the config implies ",
         shape_str(expected));
}

bool is_float_dtype(const std::string& dtype) { return dtype == "F32" || dtype == "F16" || dtype == "BF16"; }

// A weight is a float tensor (F32, F16, BF16), or F8_E4M3 together with its `<name>_scale_inv` block scales
// (docs/model.md §5). Anything else (an integer, a bool, another FP8 or a scale-less FP8) would load as numbers
// that mean nothing, so it is an error naming the file, the tensor and its dtype.
void check_dtype(const WeightSource& ckpt, const std::string& name, const Shape& full) {
  const std::string dtype = ckpt.dtype_of(name);
  if (is_float_dtype(dtype)) return;
  const std::string scale_name = name + "_scale_inv";
  const bool can_be_fp8 = full.size() == 2;
  if (dtype == "F8_E4M3" && can_be_fp8 && ckpt.contains(scale_name)) return;
  if (dtype == "F8_E4M3" && can_be_fp8)
    fail(ckpt.location_of(name), ": tensor '", name, "' has dtype F8_E4M3 but the checkpoint has no '", scale_name,
         "' (its 128x128 block scales); an FP8 weight is only read with its scales");
  fail(ckpt.location_of(name), ": tensor '", name, "' has dtype ", dtype, "; this weight takes F32, F16 or BF16",
       can_be_fp8 ? " (or F8_E4M3 with its '" + scale_name + "' scales)" : std::string());
}

// DeepSeek-V3's FP8 weights carry `<name>_scale_inv` [ceil(out/128), ceil(in/128)] (docs/model.md §5):
// W[i, j] = Wq[i, j] * scale_inv[i / 128, j / 128]. `w` holds rows/columns [r) of dimension `dim` of the weight.
void apply_block_scales(const WeightSource& ckpt, const std::string& name, const Shape& full, int dim, ShardRange r,
                        Tensor& w) {
  const std::string scale_name = name + "_scale_inv";
  if (full.size() != 2 || !ckpt.contains(scale_name)) return;
  constexpr int64_t kBlock = 128;
  const Shape want = {(full[0] + kBlock - 1) / kBlock, (full[1] + kBlock - 1) / kBlock};
  if (!is_float_dtype(ckpt.dtype_of(scale_name)))
    fail(ckpt.location_of(scale_name), ": tensor '", scale_name, "' has dtype ", ckpt.dtype_of(scale_name),
         "; block scales take F32, F16 or BF16");
  if (ckpt.shape_of(scale_name) != want)
    fail(ckpt.source_name(), ": tensor '", scale_name, "' has shape ", shape_str(ckpt.shape_of(scale_name)),
         ", expected ", shape_str(want), " (128x128 blocks of ", shape_str(full), ")");
  Tensor scale = ckpt.load(scale_name, DType::F32);
  const int64_t rows = w.dim(0), cols = w.dim(1);
  const int64_t row0 = dim == 0 ? r.begin : 0, col0 = dim == 1 ? r.begin : 0;
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j)
      w.data<float>()[i * cols + j] *= scale.data<float>()[((row0 + i) / kBlock) * want[1] + (col0 + j) / kBlock];
}
}  // namespace

Tensor load_checked(const WeightSource& ckpt, const std::string& name, const Shape& expected,
                    const Placement& placement) {
  return load_shard_checked(ckpt, name, expected, 0, {0, expected.empty() ? 1 : expected[0]}, placement);
}

Tensor load_shard_checked(const WeightSource& ckpt, const std::string& name, const Shape& full, int dim, ShardRange r,
                          const Placement& placement) {
  check_shape(ckpt, name, full);
  check_dtype(ckpt, name, full);
  if (!full.empty() && !ckpt.contains(name + "_scale_inv"))  // made in place by the source, when it can
    if (Tensor placed = ckpt.load_slice_placed(name, dim, r.begin, r.end, placement); placed.defined()) return placed;
  Tensor w = full.empty() || (dim == 0 && r.begin == 0 && r.end == full[0]) ? ckpt.load(name, DType::F32)
                                                                             : ckpt.load_slice(name, dim, r.begin, r.end, DType::F32);
  apply_block_scales(ckpt, name, full, dim, r, w);
  return placement.place(w);
}

ReplicatedLinear::ReplicatedLinear(const WeightSource& ckpt, const std::string& name, int64_t in, int64_t out,
                                   const Placement& placement)
    : weight_(load_checked(ckpt, name, {out, in}, placement)) {}

Tensor ReplicatedLinear::forward(const Tensor& x) const { return ops::linear(x, weight_); }

ColumnParallelLinear::ColumnParallelLinear(const WeightSource& ckpt, const std::string& name, int64_t in, int64_t out,
                                           const Communicator& comm, const Placement& placement)
    : weight_(load_shard_checked(ckpt, name, {out, in}, 0, shard_range(out, comm, "output features of " + name),
                                 placement)) {}

ColumnParallelLinear::ColumnParallelLinear(const WeightSource& ckpt, const std::string& name, int64_t in, int64_t out,
                                           int64_t part, int64_t parts, const Placement& placement)
    : weight_(load_shard_checked(ckpt, name, {out, in}, 0,
                                 shard_range(out, part, parts, "output features of " + name), placement)) {}

Tensor ColumnParallelLinear::forward(const Tensor& x) const { return ops::linear(x, weight_); }

RowParallelLinear::RowParallelLinear(const WeightSource& ckpt, const std::string& name, int64_t in, int64_t out,
                                     Communicator& comm, const Placement& placement)
    : weight_(load_shard_checked(ckpt, name, {out, in}, 1, shard_range(in, comm, "input features of " + name),
                                 placement)),
      comm_(&comm) {}

Tensor RowParallelLinear::forward(const Tensor& x) const {
  Tensor y = ops::linear(x, weight_);
  comm_->all_reduce_sum(y);
  return y;
}

VocabParallelEmbedding::VocabParallelEmbedding(const WeightSource& ckpt, const std::string& name, int64_t vocab,
                                               int64_t dim, Communicator& comm, const Placement& placement)
    : range_(shard_range(vocab, comm, "the vocabulary of " + name)), vocab_(vocab), comm_(&comm) {
  table_ = load_shard_checked(ckpt, name, {vocab, dim}, 0, range_, placement);
}

Tensor VocabParallelEmbedding::forward(const std::vector<int32_t>& ids) const {
  for (int32_t id : ids)
    MLARUN_CHECK(id >= 0 && id < vocab_, "token id ", id, " is outside the vocabulary [0, ", vocab_, ")");
  Tensor out = ops::embedding(ids, table_, range_.begin);
  comm_->all_reduce_sum(out);
  return out;
}

Tensor VocabParallelEmbedding::forward(const Tensor& ids) const {
  Tensor out = ops::embedding(ids, table_, range_.begin);
  comm_->all_reduce_sum(out);
  return out;
}

ParallelLMHead::ParallelLMHead(const WeightSource& ckpt, const std::string& name, int64_t dim, int64_t vocab,
                               Communicator& comm, const Placement& placement)
    : weight_(load_shard_checked(ckpt, name, {vocab, dim}, 0, shard_range(vocab, comm, "the vocabulary of " + name),
                                 placement)),
      comm_(&comm) {}

Tensor ParallelLMHead::forward(const Tensor& x) const {
  return comm_->all_gather_last_dim(ops::linear(x, weight_, DType::F32));
}

}  // namespace mlarun

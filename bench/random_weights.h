// RandomWeights: a WeightSource that knows every tensor a model of a given config and attention kind loads
// (embedding, norms, MLA or baseline attention, dense MLP, MoE gate/bias/experts/shared experts, LM head) and
// makes deterministic values on demand. It lets the benchmarks build a model of real dimensions, truncated to a
// few layers, without a checkpoint. Each value depends only on (seed, tensor name, element index), so a rank's
// load_slice generates just its slice and equals the same slice of load().
// Scales keep activations finite: norm weights 1 + 0.05 z, matrices z / sqrt(in), embedding z, gate bias 0.01 z,
// with z ~ N(0, 1) (a standardised sum of four uniforms).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "bench/attention_kind.h"
#include "kernels/kv_quant.h"
#include "runtime/placement.h"
#include "runtime/model_config.h"
#include "runtime/weight_source.h"

namespace mlarun {

class RandomWeights final : public WeightSource {
 public:
  explicit RandomWeights(const ModelConfig& c, AttentionKind attention = AttentionKind::mla(), uint64_t seed = 0);

  std::string source_name() const override;
  bool contains(const std::string& tensor) const override { return tensors_.count(tensor) != 0; }
  Shape shape_of(const std::string& tensor) const override;
  Tensor load(const std::string& tensor, DType dtype = DType::F32) const override;
  Tensor load_slice(const std::string& tensor, int dim, int64_t begin, int64_t end,
                    DType dtype = DType::F32) const override;
  // The values are made where the placement puts them, in its dtype (ops::fill_random_normal): on the GPU the
  // same values without the host's generation, conversion and copy of every weight. load_slice is this on the
  // host in f32.
  Tensor load_slice_placed(const std::string& tensor, int dim, int64_t begin, int64_t end,
                           const Placement& placement) const override;

  std::vector<std::string> tensor_names() const;  // sorted
  int64_t total_values() const;                   // sum of element counts

 private:
  enum class Init { Norm, Matrix, Embedding, Bias };
  struct Spec {
    Shape shape;
    Init init;
    uint64_t stream;  // from the seed and the name
  };
  // Where a slice's values come from: runs of `run` values, run o starting at value o * stride + first of
  // `stream`, each value times scale plus offset.
  struct Slice {
    Shape shape;
    uint64_t stream = 0;
    int64_t run = 1, stride = 0, first = 0;
    float scale = 1.0f, offset = 0.0f;
  };
  Slice slice_of(const std::string& tensor, int dim, int64_t begin, int64_t end) const;
  void add(const std::string& name, const Shape& shape, Init init);
  void add_attention(const ModelConfig& c, const std::string& prefix);
  void add_mlp(const std::string& prefix, int64_t dim, int64_t inter);
  const Spec& spec(const std::string& tensor) const;

  AttentionKind attention_;
  uint64_t seed_;
  std::string config_source_;
  std::map<std::string, Spec> tensors_;
};

// Writes n deterministic ~N(0, 1) values: out[i] depends only on (stream, first_index + i) (kernels/random_normal.h;
// ops::fill_random_normal writes the same values into a tensor on any device).
void random_normal_values(uint64_t stream, int64_t first_index, float* out, int64_t n);

// A benchmark's cache as if sequence `seq` of `num_seqs` had been prefilled: its `slots` in every layer's pool of
// `layers` get random rows of `format`'s width (written quantized when the format is), layer l's from the stream
// seed * 1000003 + l * num_seqs + seq; `placement` says where the pools live.
void write_random_cache_rows(std::vector<Tensor>& layers, const KvCacheFormat& format,
                             const std::vector<int64_t>& slots, uint64_t seed, int64_t seq, int64_t num_seqs,
                             const Placement& placement);

}  // namespace mlarun

// Each request's sampling stream belongs to its Sequence (engine/sequence.h): interleaving the draws of two
// sequences with the same seed gives each the tokens it would draw alone. Moved here from the kernels' sampler
// test, which checks the sampler itself and does not know what a sequence is.
#include <gtest/gtest.h>

#include <vector>

#include "engine/sequence.h"
#include "kernels/cpu/sampling.h"

namespace mlarun {
namespace {

TEST(SequenceRng, EachSequenceOwnsItsRandomStream) {
  const std::vector<float> logits = {0.1f, 0.4f, 0.2f, 0.3f, 0.0f};
  SamplingParams p;
  p.temperature = 1.0;
  p.seed = 99;
  Sequence a(1, {1}, p), b(2, {1}, p), alone(3, {1}, p);
  std::vector<int32_t> interleaved_a, interleaved_b, solo;
  for (int i = 0; i < 50; ++i) {
    interleaved_a.push_back(sample(logits.data(), 5, a.params(), a.rng));
    interleaved_b.push_back(sample(logits.data(), 5, b.params(), b.rng));
    solo.push_back(sample(logits.data(), 5, alone.params(), alone.rng));
  }
  EXPECT_EQ(interleaved_a, solo);
  EXPECT_EQ(interleaved_b, solo);
}

}  // namespace
}  // namespace mlarun

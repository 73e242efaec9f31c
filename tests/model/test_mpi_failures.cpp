// A tensor-parallel size the model cannot be split by must fail the same way on every rank, with a message that
// names the quantity that does not divide, and before any rank enters a collective (so nobody hangs). Run
// under mpiexec with 3 ranks (v3-tiny's 16 routed experts do not split in 3) and 4 ranks (its 6 heads do not
// split in 4). The other failure, one rank unable to read its shard, is tests/mpi_abort_probe.cpp.
#include <gtest/gtest.h>

#include <map>

#include "model/deepseek_model.h"
#include "parallel/bootstrap.h"
#include "parallel/mpi_communicator.h"
#include "runtime/model_config.h"
#include "runtime/safetensors.h"
#include "test_util.h"

using namespace mlarun;

namespace {

// What the error must mention, per world size, for deepseek-v3-tiny (6 heads, 16 routed experts).
const std::map<int, std::vector<const char*>>& expected_mentions() {
  static const std::map<int, std::vector<const char*>> mentions = {
      {3, {"n_routed_experts = 16", "not divisible by 3", "over 3 ranks"}},
      {4, {"num_attention_heads = 6", "not divisible by 4", "over 4 ranks"}},
  };
  return mentions;
}

void expect_mentions(const std::string& message, const std::vector<const char*>& parts, const std::string& who) {
  EXPECT_FALSE(message.empty()) << who << " did not throw";
  for (const char* part : parts)
    EXPECT_NE(message.find(part), std::string::npos) << who << ": message '" << message << "' misses '" << part << "'";
}

}  // namespace

TEST(MpiFailures, IndivisibleTensorParallelSizeIsNamedOnEveryRank) {
  DistributedContext ctx = init_distributed();
  auto it = expected_mentions().find(ctx.world_size);
  if (it == expected_mentions().end()) GTEST_SKIP() << "no expectation for world size " << ctx.world_size;
  const std::string dir = mlarun::testing::data_dir() + "/deepseek-v3-tiny";
  const std::string rank = "rank " + std::to_string(ctx.rank);
  const ModelConfig config = load_model_config_from_dir(dir);

  std::string from_validate =
      mlarun::testing::error_message([&] { config.validate_for_tp(ctx.world_size); });
  expect_mentions(from_validate, it->second, rank + ": validate_for_tp");

  MpiCommunicator comm;
  Checkpoint ckpt(dir);
  std::string from_model = mlarun::testing::error_message([&] { DeepseekModel model(config, ckpt, comm); });
  expect_mentions(from_model, it->second, rank + ": DeepseekModel");

  // The same words on every rank: compare with rank 0's message.
  std::vector<char> rank0_message(from_model.begin(), from_model.end());
  comm.broadcast_vector(rank0_message, 0);
  EXPECT_EQ(from_model, std::string(rank0_message.begin(), rank0_message.end())) << rank;
}

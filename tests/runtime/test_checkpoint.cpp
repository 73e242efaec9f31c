// Checkpoint directory tests: the bundled tiny fixtures must open with the exact tensor counts the model code
// relies on, and every way an index and its shards can disagree must fail naming the files involved.
#include <gtest/gtest.h>

#include <filesystem>

#include "runtime/error.h"
#include "runtime/safetensors.h"
#include "test_util.h"

namespace mlarun {
namespace {

std::string fixture(const std::string& model) { return testing::data_dir() + "/" + model; }

using testing::expect_error;

// Writes a small f32 shard holding one 2-element tensor per name.
void write_shard(const testing::ScratchDir& dir, const std::string& file, const std::vector<std::string>& names) {
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const std::string& name : names) tensors.emplace_back(name, Tensor::from_f32({2}, {1.0f, 2.0f}));
  write_safetensors(dir.file(file), tensors, {{"format", "pt"}});
}

void write_index(const testing::ScratchDir& dir, const std::string& weight_map_json) {
  dir.write("model.safetensors.index.json",
            R"({"metadata": {"total_size": 16}, "weight_map": )" + weight_map_json + "}");
}

TEST(Checkpoint, OpensShardedDeepSeekV3Fixture) {
  Checkpoint ckpt(fixture("deepseek-v3-tiny"));
  EXPECT_EQ(ckpt.num_files(), 16u);
  std::vector<std::string> names = ckpt.tensor_names();
  EXPECT_EQ(names.size(), 139u);
  EXPECT_TRUE(std::is_sorted(names.begin(), names.end()));
  EXPECT_EQ(ckpt.total_values(), 1'958'576);
  int64_t bias_values = 0;
  for (int layer : {1, 2}) {
    std::string bias = "model.layers." + std::to_string(layer) + ".mlp.gate.e_score_correction_bias";
    ASSERT_TRUE(ckpt.contains(bias));
    EXPECT_EQ(ckpt.info(bias).numel(), 16);
    bias_values += ckpt.load(bias).numel();
  }
  EXPECT_EQ(bias_values, 32);
  EXPECT_FALSE(ckpt.contains("prompt.0.greedy"));  // reference.safetensors is not a shard

  const std::string head = "lm_head.weight";
  EXPECT_NE(ckpt.file_of(head).path().find("model-00001-of-00016.safetensors"), std::string::npos);
  Tensor full = ckpt.load(head);
  ASSERT_EQ(full.ndim(), 2);
  int64_t rows = full.dim(0), cols = full.dim(1);
  Tensor shard = ckpt.load_slice(head, 0, rows / 2, rows);
  ASSERT_EQ(shard.shape(), (Shape{rows - rows / 2, cols}));
  for (int64_t i = 0; i < shard.numel(); ++i)
    ASSERT_EQ(shard.data<float>()[i], full.data<float>()[(rows / 2) * cols + i]);
  expect_error([&] { ckpt.load("no.such.weight"); }, {fixture("deepseek-v3-tiny"), "no tensor 'no.such.weight'"});
}

TEST(Checkpoint, OpensSingleFileDeepSeekV2Fixture) {
  Checkpoint ckpt(fixture("deepseek-v2-tiny"));
  EXPECT_EQ(ckpt.num_files(), 1u);
  SafetensorsFile file(fixture("deepseek-v2-tiny") + "/model.safetensors");
  EXPECT_EQ(ckpt.tensor_names().size(), file.tensors().size());
  int64_t total = 0;
  for (const TensorInfo& t : file.tensors()) total += t.numel();
  EXPECT_EQ(ckpt.total_values(), total);
  EXPECT_TRUE(ckpt.contains("model.embed_tokens.weight"));
  EXPECT_EQ(ckpt.load("model.embed_tokens.weight", DType::BF16).dtype(), DType::BF16);
}

TEST(Checkpoint, IndexNamingMissingShardFails) {
  testing::ScratchDir dir;
  write_shard(dir, "model-00001-of-00002.safetensors", {"a"});
  write_index(dir, R"({"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"})");
  expect_error([&] { Checkpoint ckpt(dir.path().string()); },
               {"model.safetensors.index.json", "model-00002-of-00002.safetensors", "does not exist"});
}

TEST(Checkpoint, IndexNamingTensorAbsentFromItsShardFails) {
  testing::ScratchDir dir;
  write_shard(dir, "model-00001-of-00002.safetensors", {"a"});
  write_shard(dir, "model-00002-of-00002.safetensors", {"b"});
  write_index(dir, R"({"a": "model-00001-of-00002.safetensors", "b": "model-00001-of-00002.safetensors"})");
  expect_error([&] { Checkpoint ckpt(dir.path().string()); },
               {"model.safetensors.index.json", "tensor 'b'", "model-00001-of-00002.safetensors",
                "does not contain it"});
}

TEST(Checkpoint, TensorInTwoShardsFails) {
  testing::ScratchDir dir;
  write_shard(dir, "model-00001-of-00002.safetensors", {"a", "shared"});
  write_shard(dir, "model-00002-of-00002.safetensors", {"b", "shared"});
  write_index(dir, R"({"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors",)"
                   R"( "shared": "model-00001-of-00002.safetensors"})");
  expect_error([&] { Checkpoint ckpt(dir.path().string()); },
               {"tensor 'shared'", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"});
}

TEST(Checkpoint, ShardHoldingUnlistedTensorFails) {
  testing::ScratchDir dir;
  write_shard(dir, "model-00001-of-00001.safetensors", {"a", "stray"});
  write_index(dir, R"({"a": "model-00001-of-00001.safetensors"})");
  expect_error([&] { Checkpoint ckpt(dir.path().string()); },
               {"model-00001-of-00001.safetensors", "tensor 'stray'", "does not list"});
}

TEST(Checkpoint, MalformedIndexFails) {
  testing::ScratchDir dir;
  write_shard(dir, "model-00001-of-00001.safetensors", {"a"});
  dir.write("model.safetensors.index.json", R"({"metadata": {}})");
  expect_error([&] { Checkpoint ckpt(dir.path().string()); }, {"model.safetensors.index.json", "weight_map"});
  write_index(dir, R"({"a": 1})");
  expect_error([&] { Checkpoint ckpt(dir.path().string()); },
               {"model.safetensors.index.json", "tensor 'a'", "must be a string"});
  write_index(dir, R"({"a": "../model-00001-of-00001.safetensors"})");
  expect_error([&] { Checkpoint ckpt(dir.path().string()); }, {"model.safetensors.index.json", "tensor 'a'"});
  write_index(dir, R"({"a": "model-00001-of-00001.safetensors", "a": "model-00001-of-00001.safetensors"})");
  expect_error([&] { Checkpoint ckpt(dir.path().string()); }, {"model.safetensors.index.json", "duplicate key"});
}

TEST(Checkpoint, CorruptShardErrorNamesTheShard) {
  testing::ScratchDir dir;
  dir.write("model-00001-of-00001.safetensors", "oops");
  write_index(dir, R"({"a": "model-00001-of-00001.safetensors"})");
  expect_error([&] { Checkpoint ckpt(dir.path().string()); }, {"model-00001-of-00001.safetensors", "HeaderTooSmall"});
}

TEST(Checkpoint, WithoutIndexOpensEveryModelFile) {
  testing::ScratchDir dir;
  write_shard(dir, "model0-mp2.safetensors", {"a", "b"});
  write_shard(dir, "model1-mp2.safetensors", {"c"});
  write_shard(dir, "reference.safetensors", {"a"});  // not a model file: ignored
  Checkpoint ckpt(dir.path().string());
  EXPECT_EQ(ckpt.num_files(), 2u);
  EXPECT_EQ(ckpt.tensor_names(), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(ckpt.total_values(), 6);
  EXPECT_NE(ckpt.file_of("c").path().find("model1-mp2.safetensors"), std::string::npos);
}

TEST(Checkpoint, WithoutIndexDuplicateTensorFails) {
  testing::ScratchDir dir;
  write_shard(dir, "model-a.safetensors", {"w"});
  write_shard(dir, "model-b.safetensors", {"w"});
  expect_error([&] { Checkpoint ckpt(dir.path().string()); },
               {"tensor 'w'", "model-a.safetensors", "model-b.safetensors"});
}

TEST(Checkpoint, EmptyDirectoryFails) {
  testing::ScratchDir dir;
  expect_error([&] { Checkpoint ckpt(dir.path().string()); },
               {dir.path().string(), "no model.safetensors or model.safetensors.index.json"});
  expect_error([&] { Checkpoint ckpt(dir.file("absent")); }, {"absent", "not a directory"});
}

}  // namespace
}  // namespace mlarun

// Safetensors reader/writer tests. Each malformed file is built byte by byte here, one per rule of the format
// (docs/layouts.md §3.2), and the error must name the file and the offending tensor, because that message is
// all a user sees when a download is truncated or a converter wrote something odd.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>

#include "runtime/error.h"
#include "runtime/safetensors.h"
#include "test_util.h"

namespace mlarun {
namespace {

class SafetensorsTest : public ::testing::Test {
 protected:
  // Writes raw bytes as `name` and returns the path.
  std::string write_bytes(const std::string& name, const std::string& bytes) { return dir_.write(name, bytes); }
  // A file whose 8-byte length prefix is `header_len`, followed by `header` and `data_len` zero bytes.
  std::string write_file(const std::string& name, uint64_t header_len, const std::string& header,
                         size_t data_len) {
    std::string bytes(8, '\0');
    for (int i = 0; i < 8; ++i) bytes[size_t(i)] = char(uint8_t(header_len >> (8 * i)));
    return write_bytes(name, bytes + header + std::string(data_len, '\0'));
  }
  std::string write_file(const std::string& name, const std::string& header, size_t data_len) {
    return write_file(name, header.size(), header, data_len);
  }

  testing::ScratchDir dir_;
};

using testing::expect_error;

void expect_open_error(const std::string& path, std::vector<std::string> parts) {
  parts.push_back(path);
  expect_error([&] { SafetensorsFile file(path); }, parts);
}

TEST_F(SafetensorsTest, RejectsFilesShorterThanTheLengthPrefix) {
  expect_open_error(write_bytes("empty.safetensors", ""), {"HeaderTooSmall"});
  expect_open_error(write_bytes("five.safetensors", "\x01\x02\x03\x04\x05"), {"HeaderTooSmall"});
}

TEST_F(SafetensorsTest, RejectsHeaderLengthAboveLimit) {
  expect_open_error(write_file("big.safetensors", 100'000'001, "{}", 0), {"HeaderTooLarge", "100000001"});
}

TEST_F(SafetensorsTest, RejectsHeaderLengthBeyondEndOfFile) {
  expect_open_error(write_file("short.safetensors", 1000, "{}", 0), {"InvalidHeaderLength"});
}

TEST_F(SafetensorsTest, RejectsHeaderThatIsNotUtf8) {
  expect_open_error(write_file("latin1.safetensors", "{\"caf\xe9\": 1}", 0), {"UTF-8"});
}

TEST_F(SafetensorsTest, RejectsHeaderThatIsNotAJsonObject) {
  expect_open_error(write_file("text.safetensors", "hello", 0), {"starting with '{'"});
  expect_open_error(write_file("array.safetensors", "[1, 2]", 0), {"starting with '{'"});
  expect_open_error(write_file("broken.safetensors", "{\"w\": ", 0), {"invalid JSON"});
}

TEST_F(SafetensorsTest, RejectsUnknownDType) {
  expect_open_error(
      write_file("dtype.safetensors", R"({"w": {"dtype": "F128", "shape": [1], "data_offsets": [0, 16]}})", 16),
      {"tensor 'w'", "unknown dtype 'F128'"});
}

TEST_F(SafetensorsTest, RejectsNonStringMetadata) {
  expect_open_error(write_file("meta.safetensors", R"({"__metadata__": {"format": "pt", "step": 5}})", 0),
                    {"__metadata__", "'step'", "must be a string"});
  expect_open_error(write_file("meta2.safetensors", R"({"__metadata__": ["pt"]})", 0), {"__metadata__"});
}

TEST_F(SafetensorsTest, RejectsMissingOrMistypedFields) {
  expect_open_error(write_file("missing.safetensors", R"({"w": {"dtype": "F32", "shape": [1]}})", 4),
                    {"tensor 'w'", "data_offsets"});
  expect_open_error(
      write_file("shape_str.safetensors", R"({"w": {"dtype": "F32", "shape": "1", "data_offsets": [0, 4]}})", 4),
      {"tensor 'w'", "shape"});
  expect_open_error(
      write_file("shape_neg.safetensors", R"({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})", 4),
      {"tensor 'w'", "shape", "negative"});
  expect_open_error(write_file("shape_float.safetensors",
                               R"({"w": {"dtype": "F32", "shape": [1.0], "data_offsets": [0, 4]}})", 4),
                    {"tensor 'w'", "shape"});
  expect_open_error(
      write_file("offsets3.safetensors", R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4, 8]}})", 4),
      {"tensor 'w'", "data_offsets"});
  expect_open_error(write_file("extra.safetensors",
                               R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4], "x": 1}})", 4),
                    {"tensor 'w'", "unexpected field 'x'"});
}

TEST_F(SafetensorsTest, RejectsGapBetweenTensors) {
  expect_open_error(write_file("gap.safetensors",
                               R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},)"
                               R"( "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}})",
                               12),
                    {"tensor 'b'", "gap", "'a'"});
}

TEST_F(SafetensorsTest, RejectsOverlappingTensors) {
  expect_open_error(write_file("overlap.safetensors",
                               R"({"b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},)"
                               R"( "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})",
                               12),
                    {"tensor 'b'", "overlaps", "'a'"});
}

TEST_F(SafetensorsTest, RejectsFirstOffsetNotZero) {
  expect_open_error(
      write_file("first.safetensors", R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})", 8),
      {"tensor 'w'", "offset 0"});
}

TEST_F(SafetensorsTest, RejectsEndBeforeBegin) {
  expect_open_error(write_file("backwards.safetensors",
                               R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},)"
                               R"( "b": {"dtype": "F32", "shape": [0], "data_offsets": [4, 0]}})",
                               4),
                    {"tensor 'b'", "END is before BEGIN"});
}

TEST_F(SafetensorsTest, RejectsSizeThatDoesNotMatchShape) {
  expect_open_error(
      write_file("size.safetensors", R"({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})", 8),
      {"tensor 'w'", "holds 8 bytes", "needs 12"});
}

TEST_F(SafetensorsTest, RejectsShapeProductOverflow) {
  expect_open_error(write_file("overflow.safetensors",
                               R"({"w": {"dtype": "F32", "shape": [4294967296, 4294967296, 4],)"
                               R"( "data_offsets": [0, 4]}})",
                               4),
                    {"tensor 'w'", "overflows"});
  expect_open_error(write_file("bits.safetensors",
                               R"({"w": {"dtype": "F64", "shape": [1152921504606846976],)"
                               R"( "data_offsets": [0, 8]}})",
                               8),
                    {"tensor 'w'", "overflows"});
}

TEST_F(SafetensorsTest, RejectsIntegersBeyondInt64) {
  expect_open_error(write_file("offset_u64.safetensors",
                               R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 18446744073709551615]}})", 4),
                    {"tensor 'w'", "data_offsets", "18446744073709551615, above 2^63 - 1"});
  expect_open_error(write_file("shape_u65.safetensors",
                               R"({"w": {"dtype": "F32", "shape": [18446744073709551616], "data_offsets": [0, 4]}})", 4),
                    {"invalid JSON", "integer 18446744073709551616 does not fit in 64 bits"});
}

TEST_F(SafetensorsTest, RejectsTrailingBytesAndTruncatedData) {
  const std::string header = R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})";
  expect_open_error(write_file("trailing.safetensors", header, 9), {"1 trailing bytes"});
  expect_open_error(write_file("truncated.safetensors", header, 7), {"needs"});
}

TEST_F(SafetensorsTest, RejectsDuplicateTensorName) {
  expect_open_error(write_file("dup.safetensors",
                               R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},)"
                               R"( "w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})",
                               8),
                    {"duplicate key \"w\""});
}

TEST_F(SafetensorsTest, AcceptsScalarZeroSizeTensorAndPaddedHeader) {
  std::string header = R"({"__metadata__": {"format": "pt"},)"
                       R"( "s": {"dtype": "F32", "shape": [], "data_offsets": [0, 4]},)"
                       R"( "z": {"dtype": "BF16", "shape": [0, 3], "data_offsets": [4, 4]}}   )";
  std::string path = write_file("ok.safetensors", header, 0);
  float value = 2.5f;
  std::string bytes(4, '\0');
  std::memcpy(bytes.data(), &value, 4);
  std::ofstream(path, std::ios::binary | std::ios::app).write(bytes.data(), 4);

  SafetensorsFile file(path);
  ASSERT_EQ(file.tensors().size(), 2u);
  EXPECT_EQ(file.metadata().at("format"), "pt");
  EXPECT_EQ(file.info("s").numel(), 1);
  EXPECT_EQ(file.info("z").numel(), 0);
  Tensor s = file.load("s");
  EXPECT_EQ(s.ndim(), 0);
  EXPECT_EQ(s.data<float>()[0], 2.5f);
  Tensor z = file.load("z", DType::F32);
  EXPECT_EQ(z.shape(), (Shape{0, 3}));
  EXPECT_EQ(z.numel(), 0);
  expect_error([&] { file.info("missing"); }, {path, "no tensor 'missing'"});
}

TEST_F(SafetensorsTest, SubByteTypesValidateButDoNotLoad) {
  std::string path = write_file("fp4.safetensors",
                                R"({"q": {"dtype": "F4", "shape": [4], "data_offsets": [0, 2]},)"
                                R"( "r": {"dtype": "F6_E2M3", "shape": [4], "data_offsets": [2, 5]}})",
                                5);
  SafetensorsFile file(path);
  expect_error([&] { file.load("q"); }, {path, "tensor 'q'", "F4"});
  expect_error([&] { file.load_slice("r", 0, 0, 2); }, {path, "tensor 'r'", "F6_E2M3"});
  expect_open_error(
      write_file("f6.safetensors", R"({"r": {"dtype": "F6_E3M2", "shape": [3], "data_offsets": [0, 2]}})", 2),
      {"tensor 'r'", "not a whole number of bytes"});
}

TEST_F(SafetensorsTest, RoundTripsEveryRuntimeDType) {
  const std::vector<float> values = {0.5f, -1.0f, 2.0f, 448.0f, -0.25f, 0.0f};
  Tensor f32 = Tensor::from_f32({2, 3}, values);
  Tensor i32 = Tensor::empty({3}, DType::I32);
  Tensor i64 = Tensor::empty({2}, DType::I64);
  for (int i = 0; i < 3; ++i) i32.data<int32_t>()[i] = -7 + 1000 * i;
  i64.data<int64_t>()[0] = int64_t(1) << 40;
  i64.data<int64_t>()[1] = -3;
  std::vector<std::pair<std::string, Tensor>> tensors = {
      {"f32", f32}, {"bf16", f32.to_dtype(DType::BF16)}, {"f16", f32.to_dtype(DType::F16)},
      {"fp8", f32.to_dtype(DType::F8_E4M3)}, {"i32", i32}, {"i64", i64}};
  std::string path = dir_.file("roundtrip.safetensors");
  write_safetensors(path, tensors, {{"format", "pt"}, {"note", "round trip"}});

  std::ifstream in(path, std::ios::binary);
  uint8_t prefix[8];
  in.read(reinterpret_cast<char*>(prefix), 8);
  EXPECT_EQ(prefix[0] % 8, 0) << "header not padded to a multiple of 8";

  SafetensorsFile file(path);
  EXPECT_EQ(file.metadata().at("note"), "round trip");
  ASSERT_EQ(file.tensors().size(), tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& [name, original] = tensors[i];
    SCOPED_TRACE(name);
    EXPECT_EQ(file.tensors()[i].name, name);  // header keeps the given order
    EXPECT_EQ(file.info(name).dtype, safetensors_dtype_name(original.dtype()));
    Tensor same = file.load(name, original.dtype());
    EXPECT_EQ(same.shape(), original.shape());
    EXPECT_EQ(std::memcmp(same.raw(), original.raw(), original.nbytes()), 0);
    EXPECT_EQ(std::memcmp(file.bytes(name), original.raw(), original.nbytes()), 0);
  }
  for (const char* name : {"f32", "bf16", "f16", "fp8"}) {
    Tensor back = file.load(name, DType::F32);
    for (size_t i = 0; i < values.size(); ++i) EXPECT_EQ(back.data<float>()[i], values[i]) << name;
  }
  Tensor bf16_from_f32 = file.load("f32", DType::BF16);  // float -> other float converts
  EXPECT_EQ(std::memcmp(bf16_from_f32.raw(), tensors[1].second.raw(), 12), 0);
  Tensor i64_as_f32 = file.load("i64", DType::F32);
  EXPECT_EQ(i64_as_f32.data<float>()[0], 1099511627776.0f);
  EXPECT_EQ(i64_as_f32.data<float>()[1], -3.0f);
  expect_error([&] { file.load("i64", DType::BF16); }, {path, "tensor 'i64'", "I64"});
  expect_error([&] { file.load("f32", DType::I32); }, {path, "tensor 'f32'", "i32"});
}

TEST_F(SafetensorsTest, LoadsUnalignedData) {
  // One U8 byte first leaves the F32 tensor at an odd address in the mapping.
  std::string path = write_file("unaligned.safetensors",
                                R"({"u": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},)"
                                R"( "w": {"dtype": "F32", "shape": [2], "data_offsets": [1, 9]}})",
                                1);
  const float values[2] = {1.5f, -8.0f};
  std::ofstream(path, std::ios::binary | std::ios::app).write(reinterpret_cast<const char*>(values), 8);
  SafetensorsFile file(path);
  Tensor w = file.load("w");
  EXPECT_EQ(w.data<float>()[0], 1.5f);
  EXPECT_EQ(w.data<float>()[1], -8.0f);
  expect_error([&] { file.load("u"); }, {path, "tensor 'u'", "U8"});
}

TEST_F(SafetensorsTest, LoadSliceMatchesFullLoad) {
  std::vector<float> values(4 * 6 * 5);
  for (size_t i = 0; i < values.size(); ++i) values[i] = float(i) * 0.5f - 7.0f;
  Tensor matrix = Tensor::from_f32({4, 6}, std::vector<float>(values.begin(), values.begin() + 24));
  Tensor cube = Tensor::from_f32({4, 6, 5}, values);
  std::string path = dir_.file("slices.safetensors");
  write_safetensors(path, {{"m", matrix.to_dtype(DType::BF16)}, {"c", cube}});
  SafetensorsFile file(path);

  Tensor full = file.load("m");
  Tensor rows = file.load_slice("m", 0, 1, 3);  // a row-parallel shard
  ASSERT_EQ(rows.shape(), (Shape{2, 6}));
  for (int r = 0; r < 2; ++r)
    for (int c = 0; c < 6; ++c) EXPECT_EQ(rows.data<float>()[r * 6 + c], full.data<float>()[(r + 1) * 6 + c]);
  Tensor cols = file.load_slice("m", 1, 2, 5);  // a column-parallel shard
  ASSERT_EQ(cols.shape(), (Shape{4, 3}));
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 3; ++c) EXPECT_EQ(cols.data<float>()[r * 3 + c], full.data<float>()[r * 6 + c + 2]);
  Tensor cols_bf16 = file.load_slice("m", 1, 2, 5, DType::BF16);
  EXPECT_EQ(cols_bf16.to_dtype(DType::F32).data<float>()[4], cols.data<float>()[4]);

  Tensor last = file.load_slice("c", 2, 1, 4);
  ASSERT_EQ(last.shape(), (Shape{4, 6, 3}));
  for (int i = 0; i < 4 * 6; ++i)
    for (int k = 0; k < 3; ++k) EXPECT_EQ(last.data<float>()[i * 3 + k], values[size_t(i * 5 + k + 1)]);
  EXPECT_EQ(file.load_slice("c", 0, 2, 2).numel(), 0);

  expect_error([&] { file.load_slice("m", 1, 4, 7); }, {path, "tensor 'm'", "out of range"});
  expect_error([&] { file.load_slice("m", 0, 3, 2); }, {path, "tensor 'm'", "out of range"});
  expect_error([&] { file.load_slice("m", 2, 0, 1); }, {path, "tensor 'm'", "no dimension 2"});
}

TEST_F(SafetensorsTest, ReadsReferenceOutputFixtures) {
  for (const char* model : {"deepseek-v2-tiny", "deepseek-v3-tiny"}) {
    SCOPED_TRACE(model);
    SafetensorsFile file(testing::data_dir() + "/" + model + "/reference.safetensors");
    EXPECT_EQ(file.metadata().at("fixture"), model);
    bool saw_f32 = false, saw_i64 = false;
    for (const TensorInfo& t : file.tensors()) {
      Tensor loaded = file.load(t.name, t.dtype == "I64" ? DType::I64 : DType::F32);
      EXPECT_EQ(loaded.shape(), t.shape);
      saw_f32 = saw_f32 || t.dtype == "F32";
      saw_i64 = saw_i64 || t.dtype == "I64";
    }
    EXPECT_TRUE(saw_f32 && saw_i64);
  }
}

TEST_F(SafetensorsTest, WriterRejectsDuplicateNames) {
  Tensor t = Tensor::from_f32({1}, {1.0f});
  std::string path = dir_.file("dup_write.safetensors");
  expect_error([&] { write_safetensors(path, {{"w", t}, {"w", t}}); }, {path, "tensor 'w'"});
}

}  // namespace
}  // namespace mlarun

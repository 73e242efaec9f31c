// Tensor shape bookkeeping, views and copies on the CPU.
#include <gtest/gtest.h>

#include "runtime/error.h"
#include "runtime/tensor.h"

using namespace mlarun;

TEST(Tensor, EmptyZerosAndDescribe) {
  Tensor t = Tensor::zeros({2, 3}, DType::F32);
  EXPECT_EQ(t.numel(), 6);
  EXPECT_EQ(t.nbytes(), 24u);
  EXPECT_EQ(t.dim(-1), 3);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(t.data<float>()[i], 0.0f);
  EXPECT_EQ(t.describe(), "f32[2, 3] on cpu");
  EXPECT_THROW(t.data<int32_t>(), Error);
  EXPECT_THROW(t.dim(2), Error);
}

TEST(Tensor, ViewsShareStorage) {
  Tensor t = Tensor::from_f32({3, 2}, {0, 1, 2, 3, 4, 5});
  Tensor v = t.view({-1});
  EXPECT_EQ(v.shape(), (Shape{6}));
  Tensor r = t.rows(1, 2);
  EXPECT_EQ(r.shape(), (Shape{2, 2}));
  EXPECT_EQ(r.data<float>()[0], 2.0f);
  r.data<float>()[0] = 42;
  EXPECT_EQ(t.data<float>()[2], 42.0f);
  EXPECT_THROW(t.view({4, -1}), Error);
  EXPECT_THROW(t.rows(2, 2), Error);
}

TEST(Tensor, CloneAndDtypeConversion) {
  Tensor t = Tensor::from_f32({2}, {1.0f, -0.5f});
  Tensor c = t.clone();
  c.data<float>()[0] = 7;
  EXPECT_EQ(t.data<float>()[0], 1.0f);
  Tensor b = t.to_dtype(DType::BF16);
  EXPECT_EQ(b.dtype(), DType::BF16);
  Tensor f = b.to_dtype(DType::F32);
  EXPECT_EQ(f.data<float>()[1], -0.5f);
}

TEST(Tensor, ImpossibleShapesAreErrors) {
  EXPECT_THROW(Tensor::empty({-1, 2}, DType::F32), Error);
  EXPECT_THROW(Tensor::empty({int64_t(1) << 40, int64_t(1) << 40}, DType::F32), Error);
  EXPECT_THROW(Tensor::from_f32({2, 2}, {1, 2, 3}), Error);
}

// Matrix products through cuBLAS with f32 accumulation: linear (y = x . W^T, weights [out, in] as checkpoints
// store them), head_linear (one product per head in a single strided-batched call, for MLA's absorbed W_UK and
// W_UV) and mla_up_project (MLA's naive-path K and V written in place by two strided-batched calls). Row-major
// tensors are column-major transposes, so y^T[N, M] = W[N, K] . x^T computes y. One handle per process, on the
// current stream per call, with a workspace from the caching allocator (so cuBLAS allocates nothing in the step
// loop).
#include <cublas_v2.h>

#include <mutex>

#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/cuda_ops.h"

namespace mlarun::ops::cuda {

namespace {

constexpr size_t kWorkspaceBytes = size_t(32) << 20;  // cuBLAS's recommendation for Hopper

// Made on first use and never destroyed (like the allocator): no teardown after the CUDA runtime has gone.
struct CublasState {
  cublasHandle_t handle = nullptr;
  Tensor workspace;
  std::mutex mutex;  // one handle: calls from several threads take turns
};

CublasState& cublas() {
  static CublasState* state = [] {
    auto* s = new CublasState();
    MLARUN_CUBLAS_CHECK(cublasCreate(&s->handle));
    s->workspace = Tensor::empty({int64_t(kWorkspaceBytes)}, DType::F8_E4M3, Device::CUDA);  // raw bytes
    return s;
  }();
  return *state;
}

// Binds the handle to the current stream and our workspace; returns it with the lock held by `lock`.
cublasHandle_t bound_handle(std::unique_lock<std::mutex>& lock) {
  CublasState& s = cublas();
  lock = std::unique_lock<std::mutex>(s.mutex);
  MLARUN_CUBLAS_CHECK(cublasSetStream(s.handle, stream()));
  MLARUN_CUBLAS_CHECK(cublasSetWorkspace(s.handle, s.workspace.raw(), kWorkspaceBytes));
  return s.handle;
}

cudaDataType_t cuda_type(DType t) { return t == DType::BF16 ? CUDA_R_16BF : CUDA_R_32F; }

void check_operands(const char* op, const Tensor& x, const Tensor& w, DType out_dtype) {
  is_bf16(x, op);
  MLARUN_CHECK(x.dtype() == w.dtype(), op, ": x ", x.describe(), " and weight ", w.describe(), " differ in dtype");
  MLARUN_CHECK(out_dtype == DType::F32 || (out_dtype == DType::BF16 && x.dtype() == DType::BF16), op,
               ": output ", dtype_name(out_dtype), " from ", dtype_name(x.dtype()),
               " operands (f32 always; bf16 from bf16)");
}

int as_int(int64_t v, const char* op, const char* what) {
  MLARUN_CHECK(v >= 0 && v <= INT32_MAX, op, ": ", what, " ", v, " exceeds cuBLAS's 32-bit sizes");
  return int(v);
}

}  // namespace

Tensor linear(const Tensor& x, const Tensor& w, DType out_dtype) {
  check_operands("linear", x, w, out_dtype);
  const int64_t M = x.dim(0), K = x.dim(1), N = w.dim(0);
  Tensor y = Tensor::empty({M, N}, out_dtype, Device::CUDA);
  if (M == 0 || N == 0) return y;
  if (K == 0) return Tensor::zeros({M, N}, out_dtype, Device::CUDA);
  const float alpha = 1.0f, beta = 0.0f;
  std::unique_lock<std::mutex> lock;
  cublasHandle_t h = bound_handle(lock);
  MLARUN_CUBLAS_CHECK(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, as_int(N, "linear", "N"), as_int(M, "linear", "M"),
                                   as_int(K, "linear", "K"), &alpha, w.raw(), cuda_type(w.dtype()), int(K), x.raw(),
                                   cuda_type(x.dtype()), int(K), &beta, y.raw(), cuda_type(out_dtype), int(N),
                                   CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  return y;
}

Tensor head_linear(const Tensor& x, const Tensor& w) {
  check_operands("head_linear", x, w, x.dtype());
  const int64_t T = x.dim(0), H = x.dim(1), K = x.dim(2), N = w.dim(1);
  Tensor y = Tensor::empty({T, H, N}, x.dtype(), Device::CUDA);
  if (T == 0 || H == 0 || N == 0) return y;
  if (K == 0) return Tensor::zeros({T, H, N}, x.dtype(), Device::CUDA);
  const float alpha = 1.0f, beta = 0.0f;
  std::unique_lock<std::mutex> lock;
  cublasHandle_t h = bound_handle(lock);
  // Head h: y[:, h, :]^T [N, T] (ld H*N) = w[h] [N, K] . x[:, h, :]^T [K, T] (ld H*K).
  MLARUN_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
      h, CUBLAS_OP_T, CUBLAS_OP_N, as_int(N, "head_linear", "N"), as_int(T, "head_linear", "T"),
      as_int(K, "head_linear", "K"), &alpha, w.raw(), cuda_type(w.dtype()), int(K), N * K, x.raw(),
      cuda_type(x.dtype()), as_int(H * K, "head_linear", "H*K"), K, &beta, y.raw(), cuda_type(x.dtype()),
      as_int(H * N, "head_linear", "H*N"), N, as_int(H, "head_linear", "H"), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  return y;
}

KeysValues mla_up_project(const Tensor& rows, const Tensor& wkv_b, int64_t nope, int64_t vd) {
  check_operands("mla_up_project", rows, wkv_b, rows.dtype());
  const int64_t n = rows.dim(0), W = rows.dim(1), R = wkv_b.dim(1), Dr = W - R, H = wkv_b.dim(0) / (nope + vd);
  KeysValues kv{Tensor::empty({n, H, nope + Dr}, rows.dtype(), Device::CUDA),
                Tensor::empty({n, H, vd}, rows.dtype(), Device::CUDA)};
  if (n == 0 || H == 0) return kv;
  const float alpha = 1.0f, beta = 0.0f;
  const cudaDataType_t type = cuda_type(rows.dtype());
  {
    std::unique_lock<std::mutex> lock;
    cublasHandle_t h = bound_handle(lock);
    // Head h of `out` (row width H * width, head stride width): out[:, h, :cols]^T [cols, n] =
    // wkv_b[h * (nope + vd) + first ..][cols, R] . latent^T [R, n], the latent being rows' first R columns (ld W).
    auto product = [&](int64_t first, int64_t cols, const Tensor& out, int64_t width) {
      MLARUN_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
          h, CUBLAS_OP_T, CUBLAS_OP_N, as_int(cols, "mla_up_project", "cols"), as_int(n, "mla_up_project", "n"),
          as_int(R, "mla_up_project", "R"), &alpha, wkv_b.rows(first, wkv_b.dim(0) - first).raw(), type, int(R),
          (nope + vd) * R, rows.raw(), type, as_int(W, "mla_up_project", "W"), 0, &beta, out.raw(), type,
          as_int(H * width, "mla_up_project", "H*width"), width, as_int(H, "mla_up_project", "H"),
          CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    };
    product(0, nope, kv.k, nope + Dr);
    product(nope, vd, kv.v, vd);
  }
  // The rope key into every head's tail: k viewed as [n * H, nope + Dr], row r taking rows[r / H, R:].
  copy_columns(rows, kv.k, {n * H, Dr, W, R, H, nope + Dr, nope});
  return kv;
}

}  // namespace mlarun::ops::cuda

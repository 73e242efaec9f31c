// MPI start-up, GPU binding, job-wide abort and the communicator factory (see bootstrap.h).
//
// Process-wide state, all of it forced by MPI or by signal handling (nothing else here is global):
//   - MPI itself is initialised once per process; the first init_distributed() does it under a once_flag and
//     caches what it learned (rank, sizes, thread level) so later calls are cheap and not collective.
//   - the signal handler may only touch async-signal-safe state, so the rank it prints is kept in a
//     sig_atomic_t set at start-up.
#include "parallel/bootstrap.h"

#include <mpi.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <mutex>

#include "parallel/mpi_communicator.h"
#include "runtime/device.h"
#include "runtime/error.h"

#ifdef MLARUN_WITH_CUDA
#include <cuda_runtime_api.h>

#include "parallel/nccl_communicator.h"
#endif

namespace mlarun {

namespace {

volatile std::sig_atomic_t g_rank_for_signal_messages = 0;  // read by on_fatal_signal only

bool mpi_running() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  return initialized && !finalized;
}

void finalize_mpi_at_exit() {
  if (mpi_running()) MPI_Finalize();
}

// Writes "mlarun: rank <r>: fatal signal <name>, aborting every rank\n" with write(2) only.
void write_signal_message(int sig) {
  char buf[128];
  size_t len = 0;
  auto put = [&](const char* s) {
    while (*s && len < sizeof buf) buf[len++] = *s++;
  };
  put("mlarun: rank ");
  char digits[12];
  int n = 0;
  for (long r = g_rank_for_signal_messages; n == 0 || r > 0; r /= 10) digits[n++] = char('0' + r % 10);
  while (n > 0 && len < sizeof buf) buf[len++] = digits[--n];
  put(": fatal signal ");
  put(sig == SIGSEGV ? "SIGSEGV" : sig == SIGABRT ? "SIGABRT" : "?");
  put(", aborting every rank\n");
  ssize_t ignored = ::write(STDERR_FILENO, buf, len);
  (void)ignored;
}

// A rank that crashes must not leave the others waiting forever inside a collective: take the job down.
// SA_RESETHAND restores the default action first, so a fault inside this handler ends the process plainly.
extern "C" void on_fatal_signal(int sig) {
  write_signal_message(sig);
  if (mpi_running()) MPI_Abort(MPI_COMM_WORLD, 128 + sig);
  std::raise(sig);
}

void install_fatal_signal_handlers() {
  struct sigaction action {};
  action.sa_handler = on_fatal_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESETHAND;
  sigaction(SIGSEGV, &action, nullptr);
  sigaction(SIGABRT, &action, nullptr);
}

// Everything MPI tells us; computed once (MPI_Comm_split_type is collective).
DistributedContext start_mpi(int* argc, char*** argv) {
  DistributedContext ctx;
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  MLARUN_CHECK(!finalized, "init_distributed: MPI has already been finalized in this process");
  if (!initialized) {
    MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &ctx.mpi_thread_level);
    std::atexit(finalize_mpi_at_exit);
  } else {
    MPI_Query_thread(&ctx.mpi_thread_level);
  }
  MLARUN_CHECK(ctx.mpi_thread_level >= MPI_THREAD_SERIALIZED,
               "init_distributed: MPI granted thread level ", ctx.mpi_thread_level,
               ", below MPI_THREAD_SERIALIZED (", int(MPI_THREAD_SERIALIZED),
               "); the runtime calls MPI from more than one thread (one at a time)");
  MPI_Comm_rank(MPI_COMM_WORLD, &ctx.rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ctx.world_size);
  MPI_Comm node;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, ctx.rank, MPI_INFO_NULL, &node);
  MPI_Comm_rank(node, &ctx.local_rank);
  MPI_Comm_size(node, &ctx.local_world_size);
  MPI_Comm_free(&node);

  g_rank_for_signal_messages = ctx.rank;
  // Alone, nobody can hang waiting for us, and the default action keeps core dumps and debuggers useful.
  if (ctx.world_size > 1) install_fatal_signal_handlers();
  return ctx;
}

// cudaGetDeviceCount (inside gpu_info) creates no context, so cudaSetDevice is still the first call that
// picks a device. No device or no driver means a host-only rank, not an error.
void bind_gpu(DistributedContext& ctx) {
#ifdef MLARUN_WITH_CUDA
  const GpuInfo& gpu = gpu_info();
  if (!gpu.available) return;
  ctx.device_count = gpu.device_count;
  ctx.device = ctx.local_rank % ctx.device_count;
  cudaError_t err = cudaSetDevice(ctx.device);
  if (err != cudaSuccess)
    fail("cudaSetDevice(", ctx.device, ") failed on ", ctx.describe(), ": ", cudaGetErrorName(err), " (",
         cudaGetErrorString(err), ")");
#else
  (void)ctx;
#endif
}

// Collective: how many ranks of the job have no GPU of their own (0 means nccl can run everywhere).
int ranks_without_own_gpu(const DistributedContext& ctx) {
#ifdef MLARUN_WITH_CUDA
  int lacking = ctx.has_own_gpu() ? 0 : 1;
#else
  int lacking = 1;
#endif
  int total = lacking;
  if (ctx.world_size > 1) MPI_Allreduce(&lacking, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  return total;
}

std::unique_ptr<Communicator> make_nccl_communicator(const DistributedContext& ctx, int ranks_lacking) {
#ifdef MLARUN_WITH_CUDA
  if (ranks_lacking > 0)
    fail("--comm nccl needs one GPU per rank, but ", ranks_lacking, " of ", ctx.world_size,
         " ranks have none of their own (this is ", ctx.describe(), ", with ", ctx.local_world_size,
         " ranks on its node); use --comm mpi to share GPUs or run on the host");
  return std::make_unique<NcclCommunicator>(MPI_COMM_WORLD);
#else
  (void)ctx;
  (void)ranks_lacking;
  fail("--comm nccl needs a CUDA build; this binary was built without CUDA (use --comm mpi)");
#endif
}

}  // namespace

std::string DistributedContext::describe() const {
  std::string s = "rank " + std::to_string(rank) + "/" + std::to_string(world_size) + " (local " +
                  std::to_string(local_rank) + "/" + std::to_string(local_world_size) + ")";
  if (device < 0) return s + ", no GPU";
  return s + ", GPU " + std::to_string(device) + " of " + std::to_string(device_count);
}

DistributedContext init_distributed(int* argc, char*** argv) {
  static std::once_flag once;
  static DistributedContext from_mpi;
  std::call_once(once, [&] { from_mpi = start_mpi(argc, argv); });
  DistributedContext ctx = from_mpi;
  bind_gpu(ctx);  // every call: the current CUDA device is per host thread
  return ctx;
}

void abort_all(const std::string& message, int code) {
  if (code == 0) code = 1;  // an abort is never a success
  const bool under_mpi = mpi_running();
  int rank = 0;
  if (under_mpi) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  std::fprintf(stderr, "mlarun: rank %d: %s\n", rank, message.c_str());
  std::fflush(stderr);
  if (under_mpi) MPI_Abort(MPI_COMM_WORLD, code);
  std::exit(code);
}

const char* communicator_kinds() { return "auto, nccl, mpi, single"; }

std::unique_ptr<Communicator> make_communicator(const std::string& kind, const DistributedContext& ctx) {
  if (kind == "single") {
    if (ctx.world_size != 1)
      fail("--comm single runs one rank, but this job has ", ctx.world_size,
           " ranks; use --comm mpi, nccl or auto");
    return std::make_unique<SingleCommunicator>();
  }
  if (kind != "mpi" && kind != "nccl" && kind != "auto")
    fail("unknown communicator '", kind, "': expected one of ", communicator_kinds());
  MLARUN_CHECK(mpi_running(), "make_communicator('", kind, "'): call init_distributed() first");
  if (kind == "mpi") return std::make_unique<MpiCommunicator>(MPI_COMM_WORLD);
  if (kind == "nccl") return make_nccl_communicator(ctx, ranks_without_own_gpu(ctx));
  // auto
  if (ctx.world_size == 1) return std::make_unique<SingleCommunicator>();
  if (ranks_without_own_gpu(ctx) == 0) return make_nccl_communicator(ctx, 0);
  return std::make_unique<MpiCommunicator>(MPI_COMM_WORLD);
}

}  // namespace mlarun

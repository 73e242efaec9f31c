// Probe for "one failing rank brings every rank down": every rank loads a model, but one rank gets a copy of the
// checkpoint with a shard deleted. That rank calls abort_all with the load error; the healthy ranks finish
// loading and wait in a barrier the failing rank never reaches. MPI_Abort must end them all quickly with a
// non-zero exit. Not a GoogleTest binary, since MPI_Abort kills the process mid-test; tests/mpi_abort_check.cmake
// runs it under mpiexec and judges the outcome.
//
//   mpiexec -n 2 mpi_abort_probe <checkpoint_dir> <failing_rank> <shard_to_delete>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "model/deepseek_model.h"
#include "parallel/bootstrap.h"
#include "parallel/mpi_communicator.h"
#include "runtime/error.h"

namespace fs = std::filesystem;
using namespace mlarun;

namespace {

// A private copy of `dir` without `shard`, for the failing rank only.
fs::path copy_without_shard(const fs::path& dir, const std::string& shard, int rank) {
  fs::path copy = fs::temp_directory_path() / ("mlarun_abort_probe_" + std::to_string(::getpid()) + "_rank" +
                                               std::to_string(rank));
  fs::remove_all(copy);
  fs::copy(dir, copy, fs::copy_options::recursive);
  if (!fs::remove(copy / shard)) fail("probe setup: ", (copy / shard).string(), " was not there to delete");
  return copy;
}

}  // namespace

int main(int argc, char** argv) {
  DistributedContext ctx = init_distributed(&argc, &argv);
  if (argc != 4) abort_all("usage: mpi_abort_probe <checkpoint_dir> <failing_rank> <shard_to_delete>", 64);
  const fs::path dir = argv[1];
  const int failing_rank = std::atoi(argv[2]);
  const std::string shard = argv[3];
  if (failing_rank < 0 || failing_rank >= ctx.world_size)
    abort_all("failing rank " + std::to_string(failing_rank) + " is not a rank of this job", 64);

  MpiCommunicator comm;
  fs::path my_dir = dir;
  try {
    if (ctx.rank == failing_rank) my_dir = copy_without_shard(dir, shard, ctx.rank);
    DeepseekModel::load(my_dir.string(), comm);
  } catch (const std::exception& e) {
    if (my_dir != dir) fs::remove_all(my_dir);  // MPI_Abort skips destructors: tidy up first
    comm.abort_all(std::string("cannot load the model: ") + e.what(), 3);
  }
  if (my_dir != dir) fs::remove_all(my_dir);
  std::printf("mpi_abort_probe: rank %d loaded, waiting in the barrier\n", ctx.rank);
  std::fflush(stdout);
  comm.barrier();  // the failing rank never gets here; MPI_Abort must end the ranks waiting inside
  std::printf("mpi_abort_probe: rank %d passed the barrier\n", ctx.rank);
  return 0;
}

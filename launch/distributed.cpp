// Joining the MPI job and choosing the communicator (see distributed.h).
#include "launch/distributed.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "parallel/bootstrap.h"
#include "parallel/fingerprint.h"
#include "runtime/error.h"

namespace mlarun::cli {

bool launched_by_mpi() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"})
    if (std::getenv(var)) return true;
  return false;
}

void join_job(int* argc, char*** argv) {
  if (launched_by_mpi()) init_distributed(argc, argv);
}

int world_size() { return launched_by_mpi() ? init_distributed().world_size : 1; }

std::unique_ptr<Communicator> make_session_communicator(const std::string& kind, int64_t tp,
                                                        double collective_timeout) {
  if (kind != "auto" && kind != "single" && kind != "mpi" && kind != "nccl")
    fail("option --comm: value '", kind, "': expected ", communicator_kinds());
  if (!launched_by_mpi()) {
    MLARUN_CHECK(tp == 1, "option --tp: value ", tp, ": needs ", tp, " ranks; start the command with mpirun -np ", tp,
                 " (see README, Multi-rank runs)");
    MLARUN_CHECK(kind != "nccl" && kind != "mpi", "option --comm: value ", kind,
                 ": needs the command to run under mpirun");
    return std::make_unique<SingleCommunicator>();
  }
  DistributedContext ctx = init_distributed();
  MLARUN_CHECK(tp == ctx.world_size, "option --tp: value ", tp, ": mpirun started ", ctx.world_size,
               " ranks; they must be equal");
  std::unique_ptr<Communicator> comm = make_communicator(kind, ctx);
  comm->set_collective_timeout(collective_timeout);
  return comm;
}

void check_ranks_agree(const std::string& model_dir, const ModelConfig& config, const std::string& options,
                       double collective_timeout) {
  if (world_size() <= 1) return;
  check_same_fingerprint({model_dir, model_config_hash(config), options}, MPI_COMM_WORLD, collective_timeout);
}

void fail_job(const std::string& message) {
  if (world_size() <= 1) {
    std::fprintf(stderr, "error: %s\n", message.c_str());
    std::exit(1);
  }
  // An error every rank meets (a bad config) is reported once, by rank 0, whose abort ends the others first.
  if (init_distributed().rank != 0) std::this_thread::sleep_for(std::chrono::milliseconds(500));
  abort_all(message, 1);
}

}  // namespace mlarun::cli

// Single-process communicator until the MPI bootstrap lands; --tp > 1 asks for it.
#include "launch/distributed.h"

#include "runtime/error.h"

namespace mlarun::cli {

std::unique_ptr<Communicator> make_session_communicator(const std::string& kind, int64_t tp) {
  if (kind != "auto" && kind != "single" && kind != "mpi" && kind != "nccl")
    fail("option --comm: value '", kind, "': expected auto, nccl, mpi or single");
  MLARUN_CHECK(tp == 1, "option --tp: value ", tp, ": tensor parallelism needs the MPI bootstrap (not built yet)");
  return std::make_unique<SingleCommunicator>();
}

}  // namespace mlarun::cli

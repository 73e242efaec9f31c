// How a command joins the job: under an MPI launcher (mpirun sets OMPI_COMM_WORLD_SIZE, PMI_SIZE or
// PMIX_RANK) every rank brings MPI up first thing, builds the communicator --comm asks for (its collectives
// watched with --collective-timeout) and checks that every rank was given the same model and options; started on
// its own, a command runs as a single rank without touching MPI.
#pragma once

#include <memory>
#include <string>

#include "parallel/communicator.h"
#include "runtime/model_config.h"

namespace mlarun::cli {

bool launched_by_mpi();
// Called at the top of main, before anything touches CUDA: initialises MPI when launched by mpirun.
void join_job(int* argc, char*** argv);
// The communicator of --comm, checked against --tp (which must equal the number of ranks), with its collective
// timeout set (--collective-timeout, seconds; 0: off).
std::unique_ptr<Communicator> make_session_communicator(const std::string& kind, int64_t tp,
                                                        double collective_timeout);
// Under mpirun with several ranks: gathers every rank's model config hash and `options` ("name=value" words) and
// throws mlarun::Error on every rank when any rank differs, naming the ranks and what differs. Alone: nothing.
void check_ranks_agree(const std::string& model_dir, const ModelConfig& config, const std::string& options,
                       double collective_timeout);
// Ends the command after an error: alone, print and return 1; in a job of several ranks, bring every rank down
// (rank 0 reports; another rank reports only if rank 0 did not end the job first, i.e. the error was its own).
[[noreturn]] void fail_job(const std::string& message);
int world_size();

}  // namespace mlarun::cli

// Probe for the collective watchdog: one rank stops itself (SIGSTOP) before a collective the others enter, as a
// rank stuck in the debugger, swapped out or deadlocked would. The waiting ranks must end the job by themselves
// within --collective-timeout, naming the collective, the seconds waited and the stopped rank. Not a GoogleTest
// binary, since the job ends in MPI_Abort; mpi_watchdog_check.cmake runs it under mpiexec and judges the outcome.
//
//   mpiexec -n 2 mpi_watchdog_probe <timeout_seconds> <stopped_rank>
#include <csignal>
#include <cstdio>
#include <cstdlib>

#include "parallel/bootstrap.h"
#include "parallel/mpi_communicator.h"

using namespace mlarun;

int main(int argc, char** argv) {
  DistributedContext ctx = init_distributed(&argc, &argv);
  if (argc != 3) abort_all("usage: mpi_watchdog_probe <timeout_seconds> <stopped_rank>", 64);
  const double timeout = std::atof(argv[1]);
  const int stopped = std::atoi(argv[2]);
  if (stopped < 0 || stopped >= ctx.world_size) abort_all("stopped rank is not a rank of this job", 64);

  MpiCommunicator comm;
  comm.set_collective_timeout(timeout);
  // A few healthy collectives first: the watchdog must let these through.
  Tensor warm = Tensor::empty({4096}, DType::F32);
  for (int i = 0; i < 3; ++i) {
    for (int64_t j = 0; j < warm.numel(); ++j) warm.data<float>()[j] = 1.0f;
    comm.all_reduce_sum(warm);
  }
  comm.barrier();
  if (warm.data<float>()[0] != float(ctx.world_size)) abort_all("warm-up all_reduce gave a wrong sum", 65);
  std::printf("mpi_watchdog_probe: rank %d warmed up\n", ctx.rank);
  std::fflush(stdout);

  if (ctx.rank == stopped) std::raise(SIGSTOP);  // never continued: the watchdog ends the job first
  comm.all_reduce_sum(warm);
  std::printf("mpi_watchdog_probe: rank %d passed the all_reduce\n", ctx.rank);
  return 0;
}

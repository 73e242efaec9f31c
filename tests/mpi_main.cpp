// GoogleTest main for the MPI test binaries (run under mpiexec, one process per rank). A multi-rank test
// passes only if it passes on every rank, so the ranks reduce their verdicts; only rank 0 prints the usual
// GoogleTest report, the others print just their failed assertions, tagged with their rank, so a failure on
// any rank stays visible without N interleaved copies of the report.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdio>
#include <string>

#include "parallel/bootstrap.h"
#include "runtime/error.h"

namespace {

// Prints a failed assertion as "[rank R] FAILED Suite.Test at file:line" plus the message. It remembers the test
// from OnTestStart: UnitTest::current_test_info() would deadlock here, as gtest holds its lock while reporting.
class RankFailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit RankFailurePrinter(int rank) : rank_(rank) {}

  void OnTestStart(const ::testing::TestInfo& test) override {
    current_test_ = std::string(test.test_suite_name()) + "." + test.name();
  }
  void OnTestPartResult(const ::testing::TestPartResult& result) override {
    if (!result.failed()) return;
    std::fprintf(stderr, "[rank %d] FAILED %s at %s:%d\n%s\n", rank_, current_test_.c_str(),
                 result.file_name() ? result.file_name() : "?", result.line_number(), result.message());
    std::fflush(stderr);
  }

 private:
  int rank_;
  std::string current_test_ = "(outside a test)";
};

}  // namespace

int main(int argc, char** argv) {
  mlarun::DistributedContext ctx;
  try {
    ctx = mlarun::init_distributed(&argc, &argv);
  } catch (const mlarun::Error& e) {
    std::fprintf(stderr, "mpi test main: %s\n", e.what());
    return 1;
  }
  ::testing::InitGoogleTest(&argc, argv);
  if (ctx.rank != 0) {
    ::testing::TestEventListeners& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new RankFailurePrinter(ctx.rank));  // gtest owns appended listeners
  }

  const int failed_here = RUN_ALL_TESTS() != 0 ? 1 : 0;
  // A sum rather than a max: it says how many ranks failed, and it is non-zero exactly when the max would be.
  int failed_ranks = 0;
  MPI_Allreduce(&failed_here, &failed_ranks, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  if (ctx.rank == 0) {
    if (failed_ranks > 0)
      std::printf("[  MPI   ] FAILED on %d of %d ranks\n", failed_ranks, ctx.world_size);
    else
      std::printf("[  MPI   ] PASSED on all %d ranks\n", ctx.world_size);
    std::fflush(stdout);
  }
  return failed_ranks > 0 ? 1 : 0;  // MPI_Finalize runs at exit (registered by init_distributed)
}

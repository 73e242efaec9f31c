// The collective watchdog: without it a stalled rank (stopped, deadlocked, stuck in a kernel) leaves every other
// rank spinning inside a collective forever. Each communicator starts its collectives non-blocking and waits
// through CollectiveWatchdog::wait, which polls until the collective is done or --collective-timeout seconds
// have passed (default 600, as PyTorch's NCCL watchdog). On timeout the rank asks the others, over a private side
// channel, which collective each is waiting in, prints one line naming the collective, the seconds waited and the
// ranks it was waiting for, and ends the job (MPI_Abort; mpirun takes the rest down).
//
// The side channel needs nothing from the stalled rank: a waiting rank answers "which collective are you in"
// queries while it sleeps between polls, so ranks that answer are waiting too and the ranks that stay silent, or
// answer from another collective, are the ones named.
#pragma once

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>
#include <vector>

namespace mlarun {

// --collective-timeout's default, in seconds.
inline constexpr double kDefaultCollectiveTimeoutSeconds = 600;

// What a collective moves, for the timeout message: "all_reduce of 4096 f32", "broadcast of 8 bytes from rank 0".
struct CollectiveInfo {
  const char* name = "collective";
  int64_t count = -1;     // elements; < 0: not shown
  const char* unit = "";  // "f32", "bytes", ...
  int root = -1;          // >= 0: "from rank R"
  std::string describe() const;
};

class CollectiveWatchdog {
 public:
  using Clock = std::chrono::steady_clock;

  // Duplicates `comm` for the side channel (collective over `comm`). `backend` names the communicator in
  // messages ("mpi", "nccl").
  CollectiveWatchdog(MPI_Comm comm, const char* backend, double timeout_seconds = kDefaultCollectiveTimeoutSeconds);
  ~CollectiveWatchdog();
  CollectiveWatchdog(const CollectiveWatchdog&) = delete;
  CollectiveWatchdog& operator=(const CollectiveWatchdog&) = delete;

  // Seconds a collective may take; 0 turns the watchdog off (wait forever). Negative or not finite: an error.
  void set_timeout(double seconds);
  double timeout() const { return timeout_s_; }
  bool enabled() const { return timeout_s_ > 0; }
  // Runs once, before the job is ended on a timeout (NCCL: ncclCommAbort, so no kernel waits on a dead peer).
  void set_before_abort(std::function<void()> hook) { before_abort_ = std::move(hook); }
  uint64_t sequence() const { return sequence_; }

  // Starts the next collective: its number (which every rank counts alike) and the clock its deadline runs on.
  void begin(const CollectiveInfo& what);
  // Waits until `done()` returns true. `done` should be cheap (MPI_Test, cudaStreamQuery): it is called in a
  // tight loop (yielding the CPU) for the first `kSpin`, then between sleeps that grow to `kMaxSleep`. Past the
  // deadline of the collective begin() started, reports and ends the job; never returns then.
  template <class Done>
  void wait(Done&& done);
  // wait() on an MPI request (MPI_Test); an MPI error is an mlarun::Error naming `call`.
  void wait_request(MPI_Request& request, const char* call);

  // The timeout line (without the "mlarun: rank R: " prefix abort_all adds), from what the peers answered:
  // answers[r] is rank r's collective number, or -1 when it did not answer (and, for this rank, ignored).
  static std::string timeout_message(int rank, const char* backend, const std::string& what, uint64_t sequence,
                                     double waited_s, double timeout_s, const std::vector<int64_t>& answers);

  static constexpr std::chrono::microseconds kSpin{1000};
  static constexpr std::chrono::microseconds kFirstSleep{50};
  static constexpr std::chrono::microseconds kMaxSleep{1000};

 private:
  bool past_deadline(Clock::time_point now) const;
  // Answers any pending "which collective are you in" queries from timed-out peers.
  void answer_queries();
  [[noreturn]] void on_timeout();

  MPI_Comm side_ = MPI_COMM_NULL;
  int rank_ = 0;
  int world_size_ = 1;
  const char* backend_;
  double timeout_s_;
  std::function<void()> before_abort_;
  uint64_t sequence_ = 0;
  int64_t answer_ = 0;  // the buffer answers are sent from (must outlive the non-blocking sends)
  CollectiveInfo current_;
  Clock::time_point started_{};
};

template <class Done>
void CollectiveWatchdog::wait(Done&& done) {
  if (done()) return;
  // Spin first: in the normal case the peers are microseconds away, and a sleep would add its own latency.
  // yield() costs nothing on an idle core and lets an oversubscribed peer run.
  Clock::time_point now = Clock::now();
  const Clock::time_point spin_end = now + kSpin;
  while (now < spin_end) {
    std::this_thread::yield();
    if (done()) return;
    now = Clock::now();
  }
  for (auto sleep = kFirstSleep;; sleep = std::min(sleep * 2, kMaxSleep)) {
    if (done()) return;
    if (past_deadline(Clock::now())) on_timeout();
    answer_queries();
    std::this_thread::sleep_for(sleep);
  }
}

}  // namespace mlarun

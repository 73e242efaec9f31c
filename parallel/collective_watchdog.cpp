// The collective watchdog (see collective_watchdog.h): the deadline, the side channel that finds out which
// ranks a timed-out collective was waiting for, and the one-line report before the job is ended.
#include "parallel/collective_watchdog.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "parallel/bootstrap.h"
#include "runtime/error.h"

namespace mlarun {

namespace {

// Tags on the watchdog's private communicator: nothing else ever sends on it.
constexpr int kQueryTag = 1;
constexpr int kAnswerTag = 2;
// How long a timed-out rank waits for its peers' answers before it reports (they answer within a few ms when
// they are waiting themselves).
constexpr double kAskSeconds = 2.0;

std::string mpi_error_text(int rc) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, text, &len);
  return std::string(text, size_t(len));
}

std::string seconds_text(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", s);
  return buf;
}

std::string rank_list(const std::vector<int>& ranks) {
  std::string s = ranks.size() == 1 ? "rank " : "ranks ";
  for (size_t i = 0; i < ranks.size(); ++i) s += (i ? ", " : "") + std::to_string(ranks[i]);
  return s;
}

}  // namespace

std::string CollectiveInfo::describe() const {
  std::string s = name;
  if (count >= 0) s += " of " + std::to_string(count) + (*unit ? std::string(" ") + unit : "");
  if (root >= 0) s += " from rank " + std::to_string(root);
  return s;
}

CollectiveWatchdog::CollectiveWatchdog(MPI_Comm comm, const char* backend, double timeout_seconds)
    : backend_(backend), timeout_s_(0) {
  set_timeout(timeout_seconds);
  int rc = MPI_Comm_dup(comm, &side_);
  if (rc != MPI_SUCCESS) fail("collective watchdog: MPI_Comm_dup failed: ", mpi_error_text(rc));
  MPI_Comm_rank(side_, &rank_);
  MPI_Comm_size(side_, &world_size_);
}

CollectiveWatchdog::~CollectiveWatchdog() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (side_ != MPI_COMM_NULL && !finalized) MPI_Comm_free(&side_);
}

void CollectiveWatchdog::set_timeout(double seconds) {
  MLARUN_CHECK(std::isfinite(seconds) && seconds >= 0, "collective timeout: ", seconds,
               " s is not a number of seconds >= 0 (0 turns the watchdog off)");
  timeout_s_ = seconds;
}

void CollectiveWatchdog::begin(const CollectiveInfo& what) {
  ++sequence_;
  answer_ = int64_t(sequence_);
  current_ = what;
  started_ = Clock::now();
}

bool CollectiveWatchdog::past_deadline(Clock::time_point now) const {
  return enabled() && std::chrono::duration<double>(now - started_).count() > timeout_s_;
}

void CollectiveWatchdog::wait_request(MPI_Request& request, const char* call) {
  int rc = MPI_SUCCESS;
  wait([&] {
    int flag = 0;
    rc = MPI_Test(&request, &flag, MPI_STATUS_IGNORE);
    return flag != 0 || rc != MPI_SUCCESS;
  });
  if (rc != MPI_SUCCESS) fail("MPI call ", call, " failed: ", mpi_error_text(rc));
}

void CollectiveWatchdog::answer_queries() {
  if (world_size_ == 1) return;
  for (;;) {
    int pending = 0;
    MPI_Status status;
    MPI_Iprobe(MPI_ANY_SOURCE, kQueryTag, side_, &pending, &status);
    if (!pending) return;
    int64_t query = 0;
    MPI_Recv(&query, 1, MPI_INT64_T, status.MPI_SOURCE, kQueryTag, side_, MPI_STATUS_IGNORE);
    // Never wait on the answer: the asker may be gone already. answer_ outlives the send (it is a member).
    MPI_Request sent;
    MPI_Isend(&answer_, 1, MPI_INT64_T, status.MPI_SOURCE, kAnswerTag, side_, &sent);
    MPI_Request_free(&sent);
  }
}

std::string CollectiveWatchdog::timeout_message(int rank, const char* backend, const std::string& what,
                                                uint64_t sequence, double waited_s, double timeout_s,
                                                const std::vector<int64_t>& answers) {
  std::vector<int> silent, same;
  std::string elsewhere;
  for (int r = 0; r < int(answers.size()); ++r) {
    if (r == rank) continue;
    if (answers[size_t(r)] < 0)
      silent.push_back(r);
    else if (answers[size_t(r)] == int64_t(sequence))
      same.push_back(r);
    else
      elsewhere += (elsewhere.empty() ? "" : ", ") + std::string("rank ") + std::to_string(r) +
                   " (waiting in collective #" + std::to_string(answers[size_t(r)]) + ")";
  }
  char timeout_text[32];
  std::snprintf(timeout_text, sizeof timeout_text, "%g", timeout_s);
  std::string m = "collective watchdog: " + what + " (collective #" + std::to_string(sequence) + " on " + backend +
                  ") has not completed after " + seconds_text(waited_s) + " s (--collective-timeout " +
                  timeout_text + "); ";
  if (silent.empty() && elsewhere.empty()) {
    m += "every other rank is waiting in it too (a stuck transport?)";
  } else {
    m += "waiting for ";
    if (!silent.empty()) m += rank_list(silent) + " (no answer: stopped, hung, or busy outside any collective)";
    if (!elsewhere.empty()) m += (silent.empty() ? "" : ", ") + elsewhere;
    if (!same.empty()) m += "; " + rank_list(same) + (same.size() == 1 ? " is" : " are") + " waiting in it too";
  }
  return m + "; ending the job";
}

void CollectiveWatchdog::on_timeout() {
  const double waited = std::chrono::duration<double>(Clock::now() - started_).count();
  // Ask every peer which collective it is in. A rank waiting in a collective itself answers while it sleeps
  // between polls (timed-out ranks keep answering while they ask); a stopped or hung rank stays silent.
  std::vector<int64_t> answers(size_t(world_size_), -1), inbox(size_t(world_size_), -1);
  std::vector<MPI_Request> receives(size_t(world_size_), MPI_REQUEST_NULL);
  static int64_t query = 0;  // the query's payload is unused; static so it outlives the freed sends
  for (int r = 0; r < world_size_; ++r) {
    if (r == rank_) continue;
    MPI_Irecv(&inbox[size_t(r)], 1, MPI_INT64_T, r, kAnswerTag, side_, &receives[size_t(r)]);
    MPI_Request sent;
    MPI_Isend(&query, 1, MPI_INT64_T, r, kQueryTag, side_, &sent);
    MPI_Request_free(&sent);
  }
  const Clock::time_point ask_end = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                                       std::chrono::duration<double>(kAskSeconds));
  int missing = world_size_ - 1;
  while (missing > 0 && Clock::now() < ask_end) {
    answer_queries();
    for (int r = 0; r < world_size_; ++r) {
      if (receives[size_t(r)] == MPI_REQUEST_NULL) continue;
      int flag = 0;
      MPI_Test(&receives[size_t(r)], &flag, MPI_STATUS_IGNORE);
      if (flag) {
        answers[size_t(r)] = inbox[size_t(r)];
        --missing;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const std::string message =
      timeout_message(rank_, backend_, current_.describe(), sequence_, waited, timeout_s_, answers);
  if (!before_abort_) abort_all(message, 1);
  // Say why first: the hook (ncclCommAbort) may take a while to tear down kernels stuck on the missing peer.
  std::fprintf(stderr, "mlarun: rank %d: %s\n", rank_, message.c_str());
  std::fflush(stderr);
  before_abort_();
  MPI_Abort(MPI_COMM_WORLD, 1);
  std::exit(1);
}

}  // namespace mlarun

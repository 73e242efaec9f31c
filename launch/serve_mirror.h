// `mlarun serve` across ranks: rank 0 serves HTTP and owns the requests; every other rank holds an identical
// Engine (its slice of the model) that must take the same steps with the same batches, or the ranks' collectives
// would no longer meet. So before each step rank 0's engine thread broadcasts a "step plan": the requests it has
// just added (prompt ids, the full SamplingParams, the engine id they got), the aborts that took effect (engine id,
// reason), whether it steps, or that serving ends. Followers replay the plan on their Engine and step when rank 0
// does; the runner already broadcasts rank 0's sampled tokens, so the engines stay identical. Plans travel on a
// communicator of their own (MPI, host memory), so a plan can never be mistaken for one of the model's
// collectives, even after one rank failed mid-step.
//
// Idle, the followers wait inside a plan broadcast under the collective watchdog, so rank 0 sends an empty plan
// (a heartbeat) whenever it has been quiet for a quarter of the smallest --collective-timeout of any rank (at
// most 5 s). A follower that finds its engine disagreeing with a plan (another engine id, an abort that did not
// take effect, another step decision) ends the job naming what differed: the ranks could only hang further on.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "parallel/communicator.h"

namespace mlarun::cli {

// What rank 0 did to its Engine since the last plan, in order: add_request calls that succeeded, then aborts.
struct StepPlan {
  struct Add {
    int64_t engine_id = -1;  // what add_request returned on rank 0
    std::vector<int32_t> prompt;
    SamplingParams params;
  };
  struct Abort {
    int64_t engine_id = -1;
    std::string reason;
  };
  std::vector<Add> adds;
  std::vector<Abort> aborts;
  bool step = false;      // rank 0 steps right after this plan
  bool shutdown = false;  // serving ends: followers return
};

std::string encode_plan(const StepPlan& plan);  // JSON text
StepPlan decode_plan(const std::string& text);  // throws mlarun::Error naming what is wrong

// The one rule both sides step by: work is left, or an abort took effect (the aborted request comes back from
// the next step, whose batch may be empty).
bool engine_should_step(const Engine& engine, bool abort_took_effect);

// The communicator plans travel on, and how often an idle rank 0 must send one.
struct PlanChannel {
  std::unique_ptr<Communicator> comm;  // null at world size 1: plans go nowhere
  std::chrono::milliseconds heartbeat{5000};
  bool active() const { return comm != nullptr; }
};
// Collective over the session's ranks (every rank calls it, after open_session). `session` is the model's
// communicator: its world size tells whether plans are needed; `collective_timeout` is this rank's.
PlanChannel open_plan_channel(const Communicator& session, double collective_timeout);

// Rank 0's half, called by the ServeEngine's engine thread only: the Engine calls that must be mirrored go
// through it, and publish() sends what they did. With an inactive channel it only forwards the calls.
class PlanPublisher {
 public:
  explicit PlanPublisher(PlanChannel& channel) : channel_(channel) {}
  bool active() const { return channel_.active(); }
  std::chrono::milliseconds heartbeat() const { return channel_.heartbeat; }
  // engine.add_request, recorded when it succeeds (an exception leaves the engine as it was: nothing to mirror).
  int64_t add_request(Engine& engine, std::vector<int32_t> prompt, const SamplingParams& params);
  // engine.abort, recorded when it took effect.
  bool abort(Engine& engine, int64_t id, const std::string& reason);
  // Sends the recorded calls and the step decision (an empty plan is the heartbeat), then starts a new plan.
  void publish(bool step);
  void publish_shutdown();

 private:
  PlanChannel& channel_;
  StepPlan plan_;
};

// A follower's whole serving life: receives each plan, replays it on `engine`, steps when rank 0 steps, and
// returns 0 at the shutdown plan. SIGINT/SIGTERM are ignored here: rank 0 decides when serving ends (mpirun
// sends them to every rank). An engine step that throws is reported; the follower then waits for rank 0 (which
// either failed the same way and sends the shutdown plan, or is left waiting in a collective until the watchdog
// ends the job).
int follow_engine(Engine& engine, PlanChannel& channel);

}  // namespace mlarun::cli

// Step plans between rank 0 and the followers of `mlarun serve` (see serve_mirror.h).
#include "launch/serve_mirror.h"

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <limits>

#include "parallel/bootstrap.h"
#include "parallel/mpi_communicator.h"
#include "runtime/error.h"
#include "runtime/json.h"

namespace mlarun::cli {

namespace {

json::Value params_json(const SamplingParams& p) {
  return {{"temperature", p.temperature}, {"top_p", p.top_p},         {"top_k", p.top_k},
          {"seed", p.seed},               {"max_tokens", p.max_tokens}, {"ignore_eos", p.ignore_eos},
          {"stop_token_ids", p.stop_token_ids}};
}

SamplingParams params_from(const json::Value& v) {
  SamplingParams p;
  p.temperature = v.at("temperature").get<double>();
  p.top_p = v.at("top_p").get<double>();
  p.top_k = v.at("top_k").get<int64_t>();
  p.seed = v.at("seed").get<uint64_t>();
  p.max_tokens = v.at("max_tokens").get<int64_t>();
  p.ignore_eos = v.at("ignore_eos").get<bool>();
  p.stop_token_ids = v.at("stop_token_ids").get<std::vector<int32_t>>();
  return p;
}

// A follower whose engine no longer matches rank 0's can only hang the job later: end it now, saying why.
[[noreturn]] void diverged(const std::string& what) {
  abort_all(detail::concat("serve: this rank's engine no longer matches rank 0's (", what, "); ending the job"), 1);
}

void broadcast_text(Communicator& comm, std::string& text) {
  std::vector<char> bytes(text.begin(), text.end());
  comm.broadcast_vector(bytes, 0);
  text.assign(bytes.begin(), bytes.end());
}

}  // namespace

std::string encode_plan(const StepPlan& plan) {
  json::Value adds = json::Value::array(), aborts = json::Value::array();
  for (const StepPlan::Add& a : plan.adds)
    adds.push_back({{"id", a.engine_id}, {"prompt", a.prompt}, {"params", params_json(a.params)}});
  for (const StepPlan::Abort& a : plan.aborts) aborts.push_back({{"id", a.engine_id}, {"reason", a.reason}});
  return json::dump({{"adds", adds}, {"aborts", aborts}, {"step", plan.step}, {"shutdown", plan.shutdown}});
}

StepPlan decode_plan(const std::string& text) {
  const json::Value v = json::parse(text, "serve step plan");
  StepPlan plan;
  try {
    for (const json::Value& a : v.at("adds"))
      plan.adds.push_back({a.at("id").get<int64_t>(), a.at("prompt").get<std::vector<int32_t>>(),
                           params_from(a.at("params"))});
    for (const json::Value& a : v.at("aborts"))
      plan.aborts.push_back({a.at("id").get<int64_t>(), a.at("reason").get<std::string>()});
    plan.step = v.at("step").get<bool>();
    plan.shutdown = v.at("shutdown").get<bool>();
  } catch (const json::Value::exception& e) {
    fail("serve step plan: ", e.what(), " in ", json::show(v));
  }
  return plan;
}

bool engine_should_step(const Engine& engine, bool abort_took_effect) {
  return engine.has_unfinished() || abort_took_effect;
}

PlanChannel open_plan_channel(const Communicator& session, double collective_timeout) {
  PlanChannel channel;
  if (session.world_size() == 1) return channel;
  channel.comm = std::make_unique<MpiCommunicator>(MPI_COMM_WORLD);
  channel.comm->set_collective_timeout(collective_timeout);
  // The timeout may differ per rank: the heartbeat must beat the smallest one that is on.
  const float mine = collective_timeout > 0 ? float(collective_timeout) : std::numeric_limits<float>::infinity();
  const Tensor all = channel.comm->all_gather_last_dim(Tensor::from_f32({1}, {mine}));
  const float* t = all.data<float>();
  const double smallest = *std::min_element(t, t + all.numel());
  const double seconds = std::min(5.0, smallest / 4);  // infinity (every watchdog off) -> 5 s
  channel.heartbeat = std::chrono::milliseconds(std::max<int64_t>(1, int64_t(seconds * 1000)));
  return channel;
}

int64_t PlanPublisher::add_request(Engine& engine, std::vector<int32_t> prompt, const SamplingParams& params) {
  if (!active()) return engine.add_request(std::move(prompt), params);
  const int64_t id = engine.add_request(prompt, params);
  plan_.adds.push_back({id, std::move(prompt), params});
  return id;
}

bool PlanPublisher::abort(Engine& engine, int64_t id, const std::string& reason) {
  const bool took_effect = engine.abort(id, reason);
  if (took_effect && active()) plan_.aborts.push_back({id, reason});
  return took_effect;
}

void PlanPublisher::publish(bool step) {
  if (!active()) return;
  plan_.step = step;
  std::string text = encode_plan(plan_);
  broadcast_text(*channel_.comm, text);
  plan_ = StepPlan{};
}

void PlanPublisher::publish_shutdown() {
  plan_ = StepPlan{};
  plan_.shutdown = true;
  publish(false);
}

int follow_engine(Engine& engine, PlanChannel& channel) {
  MLARUN_CHECK(channel.active(), "follow_engine: no plan channel (world size 1 has no followers)");
  Communicator& comm = *channel.comm;
  std::signal(SIGINT, SIG_IGN);
  std::signal(SIGTERM, SIG_IGN);
  bool failed = false;  // this rank's step threw: only a shutdown plan may follow
  while (true) {
    std::string text;
    broadcast_text(comm, text);
    const StepPlan plan = decode_plan(text);
    if (plan.shutdown) return failed ? 1 : 0;
    if (failed) diverged("its engine step failed, rank 0's did not");
    for (const StepPlan::Add& a : plan.adds) {
      int64_t id = -1;
      try {
        id = engine.add_request(a.prompt, a.params);
      } catch (const std::exception& e) {
        diverged(detail::concat("request ", a.engine_id, " was refused here: ", e.what()));
      }
      if (id != a.engine_id) diverged(detail::concat("a request got engine id ", id, ", on rank 0 ", a.engine_id));
    }
    bool aborted = false;
    for (const StepPlan::Abort& a : plan.aborts) {
      if (!engine.abort(a.engine_id, a.reason))
        diverged(detail::concat("request ", a.engine_id, " is not running here"));
      aborted = true;
    }
    if (engine_should_step(engine, aborted) != plan.step)
      diverged(plan.step ? "rank 0 steps with nothing to do here" : "rank 0 does not step with work left here");
    if (!plan.step) continue;
    try {
      engine.step();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "mlarun: rank %d: serve: engine step failed: %s\n", comm.rank(), e.what());
      failed = true;
    }
  }
}

}  // namespace mlarun::cli

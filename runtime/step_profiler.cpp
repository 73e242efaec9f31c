// The step profiler's bookkeeping (see step_profiler.h): a region stack, one boundary per enter and exit, and the
// intervals between boundaries summed per category once the step is over.
#include "runtime/step_profiler.h"

#include "runtime/error.h"

namespace mlarun {

const char* profile_category_name(ProfileCategory c) {
  switch (c) {
    case ProfileCategory::Attention: return "attention";
    case ProfileCategory::Moe: return "moe";
    case ProfileCategory::DenseGemm: return "dense_gemm";
    case ProfileCategory::NormRopeOther: return "norm_rope_other";
    case ProfileCategory::Communication: return "communication";
  }
  return "?";
}

double TimeSplit::total_ms() const {
  double sum = 0;
  for (double x : ms) sum += x;
  return sum;
}

double TimeSplit::share(ProfileCategory c) const {
  const double total = total_ms();
  return total > 0 ? (*this)[c] / total : 0;
}

TimeSplit& TimeSplit::operator+=(const TimeSplit& other) {
  for (size_t i = 0; i < ms.size(); ++i) ms[i] += other.ms[i];
  return *this;
}

StepProfiler::StepProfiler(Device device) : device_(device) {}

StepProfiler::~StepProfiler() {
  if (active_ == this) active_ = nullptr;
}

void StepProfiler::begin_step() {
  MLARUN_CHECK(!in_step_ && (active_ == nullptr || active_ == this),
               "StepProfiler: a step begins while another is being profiled on this thread");
  open_.assign(1, ProfileCategory::NormRopeOther);  // the base: what no region claims
  intervals_.clear();
  host_times_.clear();
  marks_ = 0;
  mark();  // first: a CUDA profiler without a GPU throws here, leaving nothing active
  in_step_ = true;
  active_ = this;
}

void StepProfiler::end_step() {
  if (!in_step_) return;
  mark();
  in_step_ = false;
  active_ = nullptr;
}

void StepProfiler::enter(ProfileCategory c) {
  if (!in_step_) return;
  mark();
  open_.push_back(c);
}

void StepProfiler::exit() {
  if (!in_step_ || open_.size() < 2) return;  // the base stays until the step ends
  mark();
  open_.pop_back();
}

void StepProfiler::mark() {
  if (marks_ > 0) intervals_.push_back(open_.back());
  if (device_ == Device::CUDA) {
    if (marks_ == events_.size()) events_.emplace_back();  // the pool grows during the first steps only
    events_[marks_].record();
  } else {
    host_times_.push_back(std::chrono::steady_clock::now());
  }
  ++marks_;
}

TimeSplit StepProfiler::split() const {
  MLARUN_CHECK(!in_step_, "StepProfiler: split() of a step still running");
  TimeSplit out;
  if (marks_ < 2) return out;
  if (device_ == Device::CUDA) {
    events_[marks_ - 1].synchronize();
    // Each boundary's time from the first, so the intervals telescope exactly to the step's total.
    double previous = 0;
    for (size_t i = 1; i < marks_; ++i) {
      const double at = DeviceEvent::elapsed_ms(events_[0], events_[i]);
      out[intervals_[i - 1]] += at - previous;
      previous = at;
    }
  } else {
    for (size_t i = 1; i < marks_; ++i)
      out[intervals_[i - 1]] +=
          std::chrono::duration<double, std::milli>(host_times_[i] - host_times_[i - 1]).count();
  }
  return out;
}

}  // namespace mlarun

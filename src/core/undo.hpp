// The undo steps of an operation that must happen all or not at all. Each step is pushed right before the change
// it takes back; on failure they run newest first, and a step that fails is reported while the others still run.
#pragma once

#include <exception>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace hostdev::core {

class Undo {
public:
  // `what` names the step for the report ("giving gpu0 back to its driver").
  void push(std::string what, std::function<void()> step) { steps_.push_back({std::move(what), std::move(step)}); }
  // The operation completed: nothing is to be undone.
  void commit() noexcept { steps_.clear(); }
  // Runs every step, newest first, and forgets them. Returns "<what> failed: <why>" for each step that threw.
  std::vector<std::string> run() {
    std::vector<std::string> failures;
    for (auto it = steps_.rbegin(); it != steps_.rend(); ++it) {
      try {
        it->step();
      } catch (const std::exception &e) {
        failures.push_back(it->what + " failed: " + e.what());
      } catch (...) {
        failures.push_back(it->what + " failed");
      }
    }
    steps_.clear();
    return failures;
  }

private:
  struct Step {
    std::string what;
    std::function<void()> step;
  };
  std::vector<Step> steps_;
};

} // namespace hostdev::core

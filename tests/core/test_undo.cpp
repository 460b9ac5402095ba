#include "core/undo.hpp"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <vector>

using hostdev::core::Undo;

TEST(Undo, RunsNewestFirstAndReportsFailuresWhileTheOthersStillRun) {
  std::vector<std::string> ran;
  Undo undo;
  undo.push("first", [&] { ran.push_back("first"); });
  undo.push("second", [&] {
    ran.push_back("second");
    throw std::runtime_error("disk full");
  });
  undo.push("third", [&] { ran.push_back("third"); });
  const auto failures = undo.run();
  EXPECT_EQ(ran, (std::vector<std::string>{"third", "second", "first"}));
  EXPECT_EQ(failures, std::vector<std::string>{"second failed: disk full"});
  EXPECT_TRUE(undo.run().empty()) << "steps run once";
  EXPECT_EQ(ran.size(), 3u);
}

TEST(Undo, CommitMeansNothingIsUndone) {
  bool ran = false;
  Undo undo;
  undo.push("step", [&] { ran = true; });
  undo.commit();
  EXPECT_TRUE(undo.run().empty());
  EXPECT_FALSE(ran);
}

#include "daemon/cmdline.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

using namespace hostdev::daemon;
using namespace std::chrono_literals;

namespace {

int parse(std::vector<std::string> args, DaemonOptions &options, std::vector<std::string> *unparsed = nullptr) {
  args.insert(args.begin(), "hostdevd");
  std::vector<char *> argv;
  for (auto &a : args)
    argv.push_back(a.data());
  return parse_command_line(static_cast<int>(argv.size()), argv.data(), options, unparsed);
}

} // namespace

TEST(Cmdline, EveryOption) {
  DaemonOptions o;
  EXPECT_EQ(parse({"--sysfs-root", "/tmp/x", "--state-dir", "/tmp/s", "--bus", "session", "--idle-exit", "5",
                   "--write-timeout", "0.25"},
                  o),
            -1);
  EXPECT_EQ(o.sysfs_root, "/tmp/x");
  EXPECT_EQ(o.state_dir, "/tmp/s");
  EXPECT_EQ(o.bus, "session");
  EXPECT_EQ(o.idle_exit, 5s);
  EXPECT_EQ(o.write_timeout, 250ms);
}

TEST(Cmdline, BadValuesAreUsageErrors) {
  for (const auto &bad : std::vector<std::vector<std::string>>{{"--write-timeout", "0"},
                                                               {"--write-timeout", "601"},
                                                               {"--write-timeout", "1e3"},
                                                               {"--write-timeout", "1..2"},
                                                               {"--idle-exit", "-1"},
                                                               {"--idle-exit", "x"},
                                                               {"--bus", ""},
                                                               {"--state-dir"},
                                                               {"--frobnicate"}}) {
    DaemonOptions o;
    EXPECT_EQ(parse(bad, o), 2) << bad[0];
  }
}

TEST(Cmdline, UnknownArgumentsCanBeLeftToTheCaller) {
  DaemonOptions o;
  std::vector<std::string> rest;
  EXPECT_EQ(parse({"--fake-thing", "--bus", "system"}, o, &rest), -1);
  EXPECT_EQ(rest, std::vector<std::string>{"--fake-thing"});
}

TEST(Cmdline, SecondsText) {
  EXPECT_EQ(seconds_text(10s), "10");
  EXPECT_EQ(seconds_text(250ms), "0.25");
  EXPECT_EQ(seconds_text(1001ms), "1.001");
}

// hostdevd-fake: hostdevd over a fixture sysfs tree with the fake kernel of tests/fixtures. Test code only.
//   hostdevd-fake --fixture passthrough|vgpu|no-iommu [--kernel-log FILE] [--crash-file FILE] [hostdevd options]
// --kernel-log FILE: every write the fake kernel accepted is appended to FILE ("path\tvalue" lines) and replayed
//   into the fresh tree at the next start, so a restarted daemon (kill -9, re-activation) finds the kernel state
//   it left: bound drivers, existing mdevs.
// --crash-file FILE: when FILE exists, its content (a crash point of core::crash_point) is put into
//   HOSTDEV_TEST_CRASH_AT and FILE is removed: the next start runs normally.
#include "core/error.hpp"
#include "core/sysfs.hpp"
#include "daemon/daemon.hpp"
#include "fixtures/fake_host.hpp"

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <mutex>
#include <string>
#include <vector>

int main(int argc, char **argv) {
  using namespace hostdev;
  daemon::DaemonOptions options;
  std::vector<std::string> rest;
  const std::string extra = "\nTest build only:\n"
                            "  --fixture passthrough|vgpu|no-iommu   the fixture tree (required)\n"
                            "  --kernel-log FILE     record the fake kernel's writes; replay them at start\n"
                            "  --crash-file FILE     crash point for this start (file removed when read)\n";
  if (int rc = daemon::parse_command_line(argc, argv, options, &rest, extra); rc >= 0)
    return rc;
  std::string fixture, kernel_log, crash_file;
  for (std::size_t i = 0; i < rest.size(); ++i) {
    auto take = [&](std::string &into) {
      if (i + 1 >= rest.size()) {
        std::cerr << "hostdevd-fake: " << rest[i] << " needs a value\n";
        std::exit(2);
      }
      into = rest[++i];
    };
    if (rest[i] == "--fixture")
      take(fixture);
    else if (rest[i] == "--kernel-log")
      take(kernel_log);
    else if (rest[i] == "--crash-file")
      take(crash_file);
    else {
      std::cerr << "hostdevd-fake: unknown argument '" << rest[i] << "'\n";
      return 2;
    }
  }
  test::FakeHost host;
  if (fixture == "passthrough")
    test::make_passthrough_host(host);
  else if (fixture == "vgpu")
    test::make_vgpu_host(host);
  else if (fixture == "no-iommu")
    test::make_no_iommu_host(host);
  else {
    std::cerr << "hostdevd-fake: --fixture passthrough|vgpu|no-iommu is required\n";
    return 2;
  }
  options.sysfs_root = host.root();

  auto kernel = host.kernel();
  if (!kernel_log.empty()) {
    std::ifstream in(kernel_log);
    core::Sysfs replay(host.root());
    replay.set_write_hook(kernel);
    std::string line;
    while (std::getline(in, line)) {
      auto tab = line.find('\t');
      if (tab == std::string::npos)
        continue;
      try {
        replay.write(line.substr(0, tab), line.substr(tab + 1));
      } catch (const core::Error &e) {
        std::cerr << "hostdevd-fake: replaying " << line << ": " << e.what() << "\n";
      }
    }
  }
  if (!crash_file.empty()) {
    std::ifstream in(crash_file);
    std::string point;
    if (in && std::getline(in, point) && !point.empty()) {
      ::setenv("HOSTDEV_TEST_CRASH_AT", point.c_str(), 1);
      std::remove(crash_file.c_str());
    }
  }
  core::Sysfs::WriteHook hook = kernel;
  if (!kernel_log.empty()) {
    auto mutex = std::make_shared<std::mutex>();
    hook = [kernel, kernel_log, mutex](const std::string &path, std::string_view value) {
      const int err = kernel(path, value);
      if (err == 0) {
        std::lock_guard lock(*mutex);
        std::ofstream out(kernel_log, std::ios::app);
        out << path << '\t' << value << '\n';
      }
      return err;
    };
  }
  return daemon::run_daemon(options, hook);
}

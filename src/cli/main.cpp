// hostdevctl — the command line of hostdev.
#include "cli/inspect.hpp"

#include "config.h"

#include <cstring>
#include <iostream>
#include <string>
#include <vector>

namespace {

constexpr int kExitUsage = 2;

void usage(std::ostream &out) {
  out << "Usage: hostdevctl [--help] [--version] COMMAND [OPTIONS]\n"
         "\n"
         "Commands:\n"
         "  inspect [--sysfs-root DIR] [--json] [--all]\n"
         "      The host report (IOMMU, vfio, hugepages, GPU mode, problems) and the passthrough candidates,\n"
         "      read straight from sysfs without the daemon. --all lists every PCI function, --sysfs-root reads a\n"
         "      captured tree (DIR/sys/...) instead of this machine's.\n"
         "\n"
         "Exit status: 0 success, 1 failure, 2 usage error.\n";
}

int bad_usage(const std::string &message) {
  std::cerr << "hostdevctl: " << message << "\nTry 'hostdevctl --help'.\n";
  return kExitUsage;
}

int cmd_inspect(const std::vector<std::string> &args) {
  hostdev::cli::InspectOptions options;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const auto &a = args[i];
    if (a == "--json") {
      options.json = true;
    } else if (a == "--all") {
      options.all = true;
    } else if (a == "--sysfs-root") {
      if (i + 1 >= args.size())
        return bad_usage("--sysfs-root needs a directory");
      options.sysfs_root = args[++i];
    } else if (a.rfind("--sysfs-root=", 0) == 0) {
      options.sysfs_root = a.substr(std::strlen("--sysfs-root="));
    } else {
      return bad_usage("inspect: unknown argument '" + a + "'");
    }
  }
  if (options.sysfs_root.empty())
    return bad_usage("--sysfs-root needs a directory");
  return hostdev::cli::run_inspect(options, std::cout, std::cerr);
}

} // namespace

int main(int argc, char **argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty())
    return usage(std::cerr), kExitUsage;
  const std::string cmd = args.front();
  args.erase(args.begin());
  if (cmd == "--help" || cmd == "-h" || cmd == "help") {
    usage(std::cout);
    return 0;
  }
  if (cmd == "--version") {
    std::cout << "hostdevctl " << HOSTDEV_VERSION << '\n';
    return 0;
  }
  if (cmd == "inspect")
    return cmd_inspect(args);
  return bad_usage("unknown command '" + cmd + "'");
}

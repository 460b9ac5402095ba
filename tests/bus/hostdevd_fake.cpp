// hostdevd-fake: hostdevd over a fixture sysfs tree with the fake kernel of tests/fixtures. Test code only.
//   hostdevd-fake --fixture KIND [--kernel-log FILE] [--crash-file FILE] [fault knobs] [hostdevd options]
// --fixture passthrough|vgpu|vendor-vgpu|no-iommu: the canned hosts of fixtures/fake_host.hpp; no-vfio: the passthrough
// host
//   with vfio-pci not loaded; vgpu-one-slot: one L40S PF with one VF, an mdev parent holding one vGPU of any
//   of two profiles (NVIDIA L40S-1Q, NVIDIA L40S-4Q).
// --kernel-log FILE: every write the fake kernel accepted is appended to FILE ("path\tvalue" lines) and replayed
//   into the fresh tree at the next start, so a restarted daemon (kill -9, re-activation) finds the kernel state
//   it left: bound drivers, existing mdevs.
// The boot id: $HOSTDEV_TEST_DIR/boot_id, when it exists, becomes the tree's proc/sys/kernel/random/boot_id. A test
//   "reboots" the host by killing the daemon, removing the kernel log (the kernel forgot everything) and writing a
//   new boot id.
// --crash-file FILE: when FILE exists, its content (a crash point of core::crash_point) is put into
//   HOSTDEV_TEST_CRASH_AT and FILE is removed: the next start runs normally.
// Fault knobs (FakeHost::delay_writes / fail_writes; never applied to the replay of --kernel-log):
// --delay-writes SUFFIX=MS: every write to a path ending in SUFFIX sleeps MS milliseconds first (repeatable).
// --fail-writes SUFFIX=ERRNO: every write to a path ending in SUFFIX fails with ERRNO, a number or a name such
//   as EBUSY (repeatable); 0 lifts an earlier knob for SUFFIX.
// --faults FILE: read again before every kernel write, so a test changes the faults between calls without a
//   restart. Lines "delay SUFFIX MS" or "fail SUFFIX ERRNO" ('#' comments); the file's lines are added to the
//   command line's knobs and win over them; no file = no extra faults. Default: $HOSTDEV_TEST_DIR/faults when
//   HOSTDEV_TEST_DIR is set (harness.sh sets it, and dbus-daemon passes it on to the activated daemon).
#include "core/error.hpp"
#include "core/sysfs.hpp"
#include "daemon/daemon.hpp"
#include "fixtures/fake_host.hpp"

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace {

using namespace hostdev;

struct Fault {
  enum Kind { Delay, Fail } kind;
  std::string suffix;
  long value; // ms or errno
  bool operator==(const Fault &) const = default;
};

std::optional<int> parse_errno(const std::string &text) {
  static const std::map<std::string, int> names = {{"EPERM", EPERM},        {"ENOENT", ENOENT}, {"EIO", EIO},
                                                   {"ENXIO", ENXIO},        {"EAGAIN", EAGAIN}, {"ENOMEM", ENOMEM},
                                                   {"EACCES", EACCES},      {"EBUSY", EBUSY},   {"EEXIST", EEXIST},
                                                   {"ENODEV", ENODEV},      {"EINVAL", EINVAL}, {"ENOSPC", ENOSPC},
                                                   {"ETIMEDOUT", ETIMEDOUT}};
  if (auto it = names.find(text); it != names.end())
    return it->second;
  char *end = nullptr;
  errno = 0;
  const long n = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno != 0 || n < 0 || n > 4095)
    return std::nullopt;
  return static_cast<int>(n);
}

std::optional<long> parse_ms(const std::string &text) {
  char *end = nullptr;
  errno = 0;
  const long n = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno != 0 || n < 0 || n > 3600 * 1000)
    return std::nullopt;
  return n;
}

std::optional<Fault> make_fault(Fault::Kind kind, const std::string &suffix, const std::string &value) {
  if (suffix.empty())
    return std::nullopt;
  if (kind == Fault::Delay) {
    auto ms = parse_ms(value);
    return ms ? std::optional<Fault>(Fault{kind, suffix, *ms}) : std::nullopt;
  }
  auto err = parse_errno(value);
  return err ? std::optional<Fault>(Fault{kind, suffix, *err}) : std::nullopt;
}

void apply(test::FakeHost &host, const Fault &f) {
  if (f.kind == Fault::Delay)
    host.delay_writes(f.suffix, std::chrono::milliseconds(f.value));
  else
    host.fail_writes(f.suffix, static_cast<int>(f.value));
}

// The faults of the command line plus those of the faults file. FakeHost's knobs only accumulate and the last
// one matching a path wins, so a change of the file appends zero knobs for what went away, the command line's
// knobs again, then the file's.
class Faults {
public:
  Faults(test::FakeHost &host, std::vector<Fault> fixed, std::string file)
      : host_(host), fixed_(std::move(fixed)), file_(std::move(file)) {
    for (const auto &f : fixed_)
      apply(host_, f);
  }

  void refresh() {
    if (file_.empty())
      return;
    std::lock_guard lock(mutex_);
    std::string text;
    if (std::ifstream in(file_); in) {
      std::ostringstream all;
      all << in.rdbuf();
      text = all.str();
    }
    if (text == text_)
      return;
    text_ = text;
    std::vector<Fault> now;
    std::istringstream lines(text);
    std::string line;
    while (std::getline(lines, line)) {
      if (auto hash = line.find('#'); hash != std::string::npos)
        line.erase(hash);
      std::istringstream words(line);
      std::string kind, suffix, value, extra;
      if (!(words >> kind))
        continue;
      std::optional<Fault> f;
      if ((words >> suffix >> value) && !(words >> extra) && (kind == "delay" || kind == "fail"))
        f = make_fault(kind == "delay" ? Fault::Delay : Fault::Fail, suffix, value);
      if (!f) {
        std::cerr << "hostdevd-fake: " << file_ << ": ignoring '" << line
                  << "' (want 'delay SUFFIX MS' or 'fail SUFFIX ERRNO')\n";
        continue;
      }
      now.push_back(*f);
    }
    for (const auto &old : from_file_)
      apply(host_, Fault{old.kind, old.suffix, 0});
    for (const auto &f : fixed_)
      apply(host_, f);
    for (const auto &f : now)
      apply(host_, f);
    from_file_ = std::move(now);
  }

private:
  test::FakeHost &host_;
  std::vector<Fault> fixed_;
  std::string file_;
  std::mutex mutex_;
  std::string text_;
  std::vector<Fault> from_file_;
};

// The fixture with one vGPU slot: one PF, one VF that holds one mdev of either profile.
void make_vgpu_one_slot_host(test::FakeHost &h) {
  h.iommu(true).vfio(true, true).driver("nvidia");
  test::FnSpec pf = test::make_fn(test::kPf0Addr, 0x10de, 0x26b9, 0x030200, "nvidia", 10);
  pf.numa_node = 0;
  pf.subsystem_vendor = 0x10de;
  pf.subsystem_device = 0x1851;
  pf.sriov_totalvfs = 1;
  h.add_function(pf);
  h.host_driver_for(test::kPf0Addr, "nvidia");
  h.add_vfs(test::kPf0Addr, 1, 100, 0x26b9);
  h.add_mdev_parent(test::vf_address(test::kPf0Addr, 0),
                    {{"nvidia-1155", "NVIDIA L40S-1Q",
                      "num_heads=4, frl_config=60, framebuffer=1024M, max_resolution=7680x4320, max_instance=48", 1},
                     {"nvidia-1157", "NVIDIA L40S-4Q",
                      "num_heads=4, frl_config=60, framebuffer=4096M, max_resolution=7680x4320, max_instance=12", 1}},
                    true);
  h.hugepages(1024, 1024);
}

} // namespace

int main(int argc, char **argv) {
  daemon::DaemonOptions options;
  std::vector<std::string> rest;
  const std::string extra =
      "\nTest build only:\n"
      "  --fixture passthrough|vgpu|vendor-vgpu|no-iommu|no-vfio|vgpu-one-slot|bench-vgpu|bench-4096   the fixture "
      "tree (required)\n"
      "  --kernel-log FILE     record the fake kernel's writes; replay them at start\n"
      "  --crash-file FILE     crash point for this start (file removed when read)\n"
      "  --delay-writes SUFFIX=MS     writes to paths ending in SUFFIX sleep MS ms first (repeatable)\n"
      "  --fail-writes SUFFIX=ERRNO   writes to paths ending in SUFFIX fail with ERRNO (number or name)\n"
      "  --vfio-cdev           a kernel with VFIO device cdevs and iommufd (FakeHost::vfio_cdev)\n"
      "  --faults FILE         'delay SUFFIX MS' / 'fail SUFFIX ERRNO' lines, read again before every write\n"
      "                        (default $HOSTDEV_TEST_DIR/faults when HOSTDEV_TEST_DIR is set)\n";
  if (int rc = daemon::parse_command_line(argc, argv, options, &rest, extra); rc >= 0)
    return rc;
  std::string fixture, kernel_log, crash_file, faults_file;
  bool faults_given = false;
  std::vector<Fault> fixed_faults;
  bool vfio_cdev = false;
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
    else if (rest[i] == "--vfio-cdev")
      vfio_cdev = true;
    else if (rest[i] == "--faults") {
      take(faults_file);
      faults_given = true;
    } else if (rest[i] == "--delay-writes" || rest[i] == "--fail-writes") {
      const bool delay = rest[i] == "--delay-writes";
      std::string spec;
      take(spec);
      const auto eq = spec.rfind('=');
      std::optional<Fault> f;
      if (eq != std::string::npos)
        f = make_fault(delay ? Fault::Delay : Fault::Fail, spec.substr(0, eq), spec.substr(eq + 1));
      if (!f) {
        std::cerr << "hostdevd-fake: " << rest[i - 1] << " wants " << (delay ? "SUFFIX=MS" : "SUFFIX=ERRNO")
                  << ", not '" << spec << "'\n";
        return 2;
      }
      fixed_faults.push_back(*f);
    } else {
      std::cerr << "hostdevd-fake: unknown argument '" << rest[i] << "'\n";
      return 2;
    }
  }
  if (!faults_given)
    if (const char *dir = std::getenv("HOSTDEV_TEST_DIR"); dir != nullptr && *dir != '\0')
      faults_file = std::string(dir) + "/faults";

  const auto building = std::chrono::steady_clock::now();
  test::FakeHost host;
  if (fixture == "passthrough")
    test::make_passthrough_host(host);
  else if (fixture == "vgpu")
    test::make_vgpu_host(host);
  else if (fixture == "vendor-vgpu")
    test::make_vendor_vgpu_host(host);
  else if (fixture == "no-iommu")
    test::make_no_iommu_host(host);
  else if (fixture == "no-vfio") {
    test::make_passthrough_host(host);
    host.vfio(false, true);
  } else if (fixture == "vgpu-one-slot")
    make_vgpu_one_slot_host(host);
  else if (fixture == "bench-vgpu") // the benchmark's vGPU host: 8 x L40S, 32 VFs, 20 types
    test::make_big_vgpu_host(host, 8, 32, 20);
  else if (fixture == "bench-4096")
    test::make_many_functions_host(host, 4096);
  else {
    std::cerr << "hostdevd-fake: --fixture "
                 "passthrough|vgpu|vendor-vgpu|no-iommu|no-vfio|vgpu-one-slot|bench-vgpu|bench-4096 is required\n";
    return 2;
  }
  if (vfio_cdev)
    host.vfio_cdev(true);
  // Part of the activation time the benchmark measures, but not hostdevd's: it says so (tests/bench/bus-bench.sh).
  std::cerr
      << "hostdevd-fake: fixture " << fixture << " built in "
      << std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - building).count()
      << " ms" << std::endl;
  options.sysfs_root = host.root();
  options.uevent_socket = host.root() + "/uevent.sock"; // the tests play the kernel's uevents here
  if (const char *dir = std::getenv("HOSTDEV_TEST_DIR"); dir != nullptr && *dir != '\0') {
    std::ifstream in(std::string(dir) + "/boot_id");
    std::string boot_id;
    if (in && std::getline(in, boot_id))
      host.write_file("proc/sys/kernel/random/boot_id", boot_id + "\n");
  }

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
  // After the replay: the knobs are for the daemon's writes only. `faults` outlives every write that can start
  // (run_daemon returns before main does); a write left running after a Timeout only calls `kernel`.
  Faults faults(host, std::move(fixed_faults), faults_file);
  auto log_mutex = std::make_shared<std::mutex>();
  core::Sysfs::WriteHook hook = [kernel, kernel_log, log_mutex, &faults](const std::string &path,
                                                                         std::string_view value) {
    faults.refresh();
    const int err = kernel(path, value);
    if (err == 0 && !kernel_log.empty()) {
      std::lock_guard lock(*log_mutex);
      std::ofstream out(kernel_log, std::ios::app);
      out << path << '\t' << value << '\n';
    }
    return err;
  };
  return daemon::run_daemon(options, hook);
}

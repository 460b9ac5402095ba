// UeventMonitor over its fixture-tree socket: what it believes, what each batch asks the model to read again,
// and that a datagram it could not read whole (a lost event, as after ENOBUFS) asks for everything.
#include "daemon/monitor.hpp"

#include <gtest/gtest.h>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

using namespace hostdev;

namespace {

class MonitorTest : public ::testing::Test {
protected:
  void SetUp() override {
    char tmpl[] = "/tmp/hostdev-monitor-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/uevent.sock";
    monitor_ = std::make_unique<daemon::UeventMonitor>(path_);
  }
  void TearDown() override {
    monitor_.reset();
    ::rmdir(dir_.c_str());
  }
  void send(const std::string &bytes) {
    const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(fd, 0);
    const int big = 1 << 20;
    (void)::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strcpy(addr.sun_path, path_.c_str());
    EXPECT_EQ(::sendto(fd, bytes.data(), bytes.size(), 0, reinterpret_cast<const sockaddr *>(&addr), sizeof addr),
              static_cast<ssize_t>(bytes.size()));
    ::close(fd);
  }
  static std::string uevent(const std::string &action, const std::string &devpath, const std::string &subsystem) {
    std::string out = action + "@" + devpath + '\0' + "ACTION=" + action + '\0' + "DEVPATH=" + devpath + '\0' +
                      "SUBSYSTEM=" + subsystem + '\0';
    return out;
  }
  std::string dir_, path_;
  std::unique_ptr<daemon::UeventMonitor> monitor_;
};

} // namespace

TEST_F(MonitorTest, EachBelievedEventNamesWhatToReadAgain) {
  send(uevent("unbind", "/devices/pci0000:00/0000:02:00.0", "pci"));
  send(uevent("add", "/devices/virtual/tty/tty9", "tty"));
  send("libudev\0garbage");
  send(uevent("bind", "/devices/pci0000:00/0000:03:00.0", "pci"));
  const auto batch = monitor_->drain();
  EXPECT_EQ(batch.received, 4u);
  EXPECT_EQ(batch.relevant, 2u);
  EXPECT_FALSE(batch.overrun);
  EXPECT_EQ(batch.change.functions, (std::set<std::string>{"0000:02:00.0", "0000:03:00.0"}));
  EXPECT_FALSE(batch.change.everything);
  EXPECT_TRUE(monitor_->drain().change.empty()) << "drained";
}

TEST_F(MonitorTest, AnEventItCouldNotReadWholeAsksForEverything) {
  send(uevent("bind", "/devices/pci0000:00/0000:02:00.0", "pci"));
  send(std::string(96 * 1024, 'x')); // larger than any uevent: truncated
  const auto batch = monitor_->drain();
  EXPECT_TRUE(batch.overrun);
  EXPECT_TRUE(batch.change.everything);
}

TEST_F(MonitorTest, TheSocketIsTheDaemonsAlone) {
  struct stat st {};
  ASSERT_EQ(::stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(st.st_uid, ::geteuid());
  monitor_.reset();
  EXPECT_NE(::access(path_.c_str(), F_OK), 0) << "removed with the monitor";
}

TEST_F(MonitorTest, AnotherUsersEventIsNotBelieved) {
  if (::geteuid() != 0)
    GTEST_SKIP() << "needs root to send as another uid";
  ASSERT_EQ(::chmod(dir_.c_str(), 0711), 0); // let it reach the socket at all: only the credentials refuse it
  ASSERT_EQ(::chmod(path_.c_str(), 0666), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    if (::setgid(65534) != 0 || ::setuid(65534) != 0)
      ::_exit(3);
    send(uevent("unbind", "/devices/pci0000:00/0000:02:00.0", "pci"));
    ::_exit(::testing::Test::HasFailure() ? 1 : 0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "the sender failed";
  const auto batch = monitor_->drain();
  EXPECT_EQ(batch.received, 0u);
  EXPECT_TRUE(batch.change.empty());
}

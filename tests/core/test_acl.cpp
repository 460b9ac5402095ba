#include "core/acl.hpp"
#include "core/error.hpp"

#include "fixtures/fake_host.hpp"

#include <gtest/gtest.h>

#include <sys/stat.h>
#include <sys/xattr.h>

using namespace hostdev::core;
using namespace hostdev::test;

namespace {

class AclTest : public ::testing::Test {
protected:
  void SetUp() override {
    host_.write_file("dev/vfio/12", "");
    ::chmod(host_.path("dev/vfio/12").c_str(), 0600);
    sysfs_ = std::make_unique<Sysfs>(host_.root());
    if (::getxattr(host_.path("dev/vfio/12").c_str(), "system.posix_acl_access", nullptr, 0) < 0 && errno == EOPNOTSUPP)
      GTEST_SKIP() << "the test's file system has no POSIX ACLs";
  }
  FakeHost host_;
  std::unique_ptr<Sysfs> sysfs_;
};

TEST_F(AclTest, GrantAndRevokeLeaveTheNodeAsItWas) {
  EXPECT_FALSE(has_user_access(*sysfs_, "dev/vfio/12", 4712));
  grant_user_access(*sysfs_, "dev/vfio/12", 4712);
  EXPECT_TRUE(has_user_access(*sysfs_, "dev/vfio/12", 4712));
  EXPECT_FALSE(has_user_access(*sysfs_, "dev/vfio/12", 4713)) << "only the one user";
  grant_user_access(*sysfs_, "dev/vfio/12", 4713);
  grant_user_access(*sysfs_, "dev/vfio/12", 4712); // twice: one entry
  revoke_user_access(*sysfs_, "dev/vfio/12", 4712);
  EXPECT_FALSE(has_user_access(*sysfs_, "dev/vfio/12", 4712));
  EXPECT_TRUE(has_user_access(*sysfs_, "dev/vfio/12", 4713));
  revoke_user_access(*sysfs_, "dev/vfio/12", 4713);
  EXPECT_LT(::getxattr(host_.path("dev/vfio/12").c_str(), "system.posix_acl_access", nullptr, 0), 0)
      << "no ACL is left behind";
  struct stat st {};
  ASSERT_EQ(::stat(host_.path("dev/vfio/12").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600U) << "the mode is as before";
}

TEST_F(AclTest, AMissingNodeIsAnErrorToGrantAndNothingToRevoke) {
  EXPECT_THROW(grant_user_access(*sysfs_, "dev/vfio/99", 4712), Error);
  EXPECT_NO_THROW(revoke_user_access(*sysfs_, "dev/vfio/99", 4712));
  EXPECT_THROW(grant_user_access(*sysfs_, "../etc/passwd", 4712), Error) << "never outside the root";
}

} // namespace

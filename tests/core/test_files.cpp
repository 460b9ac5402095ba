#include "core/files.hpp"

#include "core/error.hpp"
#include "fixtures/test_util.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <sys/stat.h>

namespace fs = std::filesystem;
using namespace hostdev::core;
using hostdev::test::error_code_of;
using ::testing::HasSubstr;

namespace {

std::string read_text(const fs::path &p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_text(const fs::path &p, const std::string &text) { std::ofstream(p) << text; }

std::vector<std::string> names_in(const fs::path &dir) {
  std::vector<std::string> out;
  for (const auto &e : fs::directory_iterator(dir))
    out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

class FilesTest : public ::testing::Test {
protected:
  hostdev::test::TempDir tmp_{"hostdev-files"};
  fs::path root_ = tmp_.path();
};

} // namespace

TEST_F(FilesTest, AtomicWriteFileWritesModeAndReplaces) {
  const fs::path p = root_ / "file.txt";
  atomic_write_file(p.string(), "first");
  atomic_write_file(p.string(), "second, longer content", 0640);
  EXPECT_EQ(read_text(p), "second, longer content");
  struct stat st {};
  ASSERT_EQ(::stat(p.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0640U);
  EXPECT_EQ(names_in(root_), std::vector<std::string>{"file.txt"});
  atomic_write_file(p.string(), "");
  EXPECT_EQ(read_text(p), "");
}

TEST_F(FilesTest, AtomicWriteFileFailsCleanlyWhenRenameFails) {
  // The target is a non-empty directory: the temp file is written, the rename fails (even for root).
  fs::create_directories(root_ / "target" / "inside");
  try {
    atomic_write_file((root_ / "target").string(), "data");
    FAIL() << "no error";
  } catch (const Error &e) {
    EXPECT_EQ(e.code(), Errc::KernelError);
    EXPECT_THAT(e.what(), HasSubstr((root_ / "target").string() + ": "));
  }
  EXPECT_EQ(names_in(root_), std::vector<std::string>{"target"});
}

TEST_F(FilesTest, AtomicWriteFileFailsWhenParentIsNotADirectory) {
  write_text(root_ / "plain", "x");
  EXPECT_EQ(error_code_of([&] { atomic_write_file((root_ / "plain" / "f").string(), "data"); }), Errc::KernelError);
  EXPECT_EQ(read_text(root_ / "plain"), "x");
}

TEST_F(FilesTest, ReadWholeFileRefusesSymlinks) {
  write_text(root_ / "real", "content");
  fs::create_symlink(root_ / "real", root_ / "link");
  std::string out;
  EXPECT_TRUE(read_whole_file((root_ / "real").string(), out));
  EXPECT_EQ(out, "content");
  EXPECT_FALSE(read_whole_file((root_ / "link").string(), out));
}

TEST_F(FilesTest, RemoveFileToleratesAbsenceAndReportsOtherFailures) {
  write_text(root_ / "f", "x");
  remove_file((root_ / "f").string());
  EXPECT_FALSE(fs::exists(root_ / "f"));
  remove_file((root_ / "f").string()); // gone already: fine
  fs::create_directories(root_ / "dir" / "inside");
  EXPECT_EQ(error_code_of([&] { remove_file((root_ / "dir").string()); }), Errc::KernelError);
}

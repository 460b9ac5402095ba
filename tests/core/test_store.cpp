#include "core/store.hpp"

#include "core/error.hpp"

#include <gmock/gmock.h>
#include "fixtures/test_util.hpp"

#include <gtest/gtest.h>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include <sys/resource.h>
#include <sys/stat.h>

#include <nlohmann/json.hpp>

namespace fs = std::filesystem;
using namespace hostdev::core;
using ::testing::HasSubstr;
using ::testing::StartsWith;

namespace {

const std::string kDevA = "0123456789abcdef0123456789abcdef";
const std::string kDevB = "fedcba9876543210fedcba9876543210";
const std::string kInst = "00000000000000000000000000000001";
const std::string kInst2 = "00000000000000000000000000000002";
const std::string kIntent = "abababababababababababababababab";
const std::string kUuid = "4b20d080-1b54-4048-85b3-a6a62d165c01";

DeviceRecord full_device() {
  DeviceRecord d;
  d.id = kDevA;
  d.name = "gpu0";
  d.type = "gpu";
  d.pci_address = "0000:a2:00.0";
  d.vendor_id = "10de";
  d.device_id = "26b9";
  d.iommu_group = 42;
  d.created_at = 1700000000123456ULL;
  d.attached_to = kInst;
  d.host_driver = "nvidia";
  return d;
}

DeviceRecord bare_device() {
  DeviceRecord d;
  d.id = kDevB;
  d.name = "nic0";
  d.type = "pci";
  d.pci_address = "0000:03:00.1";
  d.vendor_id = "8086";
  d.device_id = "1521";
  d.created_at = 1700000000000001ULL;
  return d;
}

InstanceRecord full_instance() {
  InstanceRecord r;
  r.id = kInst;
  r.name = "vm1";
  r.image = "ubuntu:24.04";
  r.devices = {kDevA, kDevB};
  r.gpu_profile = "L40S-1Q";
  r.mdev_uuid = kUuid;
  r.mdev_parent = "0000:a2:00.4";
  r.owner_uid = 4000000000U;
  r.created_at = 1700000000999999ULL;
  return r;
}

MdevRecord full_mdev() { return MdevRecord{kUuid, "0000:a2:00.4", "nvidia-1155", kInst, 1700000000555555ULL}; }

Intent full_intent() {
  return Intent{kIntent, "create-instance", kInst, {kDevA, kDevB}, kUuid, 1700000000777777ULL, ""};
}

void expect_same(const DeviceRecord &a, const DeviceRecord &b) {
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.name, b.name);
  EXPECT_EQ(a.type, b.type);
  EXPECT_EQ(a.pci_address, b.pci_address);
  EXPECT_EQ(a.vendor_id, b.vendor_id);
  EXPECT_EQ(a.device_id, b.device_id);
  EXPECT_EQ(a.iommu_group, b.iommu_group);
  EXPECT_EQ(a.created_at, b.created_at);
  EXPECT_EQ(a.attached_to, b.attached_to);
  EXPECT_EQ(a.host_driver, b.host_driver);
}

void expect_same(const InstanceRecord &a, const InstanceRecord &b) {
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.name, b.name);
  EXPECT_EQ(a.image, b.image);
  EXPECT_EQ(a.devices, b.devices);
  EXPECT_EQ(a.gpu_profile, b.gpu_profile);
  EXPECT_EQ(a.mdev_uuid, b.mdev_uuid);
  EXPECT_EQ(a.mdev_parent, b.mdev_parent);
  EXPECT_EQ(a.owner_uid, b.owner_uid);
  EXPECT_EQ(a.created_at, b.created_at);
}

void expect_same(const MdevRecord &a, const MdevRecord &b) {
  EXPECT_EQ(a.uuid, b.uuid);
  EXPECT_EQ(a.parent, b.parent);
  EXPECT_EQ(a.type_id, b.type_id);
  EXPECT_EQ(a.instance_id, b.instance_id);
  EXPECT_EQ(a.created_at, b.created_at);
}

void expect_same(const Intent &a, const Intent &b) {
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.op, b.op);
  EXPECT_EQ(a.instance_id, b.instance_id);
  EXPECT_EQ(a.bound_devices, b.bound_devices);
  EXPECT_EQ(a.mdev_uuid, b.mdev_uuid);
  EXPECT_EQ(a.started_at, b.started_at);
}

std::string read_text(const fs::path &p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_text(const fs::path &p, const std::string &text) {
  std::ofstream out(p);
  out << text;
  ASSERT_TRUE(out.good()) << p;
}

// Every path below `root`, relative, sorted.
std::vector<std::string> tree(const fs::path &root) {
  std::vector<std::string> out;
  for (const auto &entry : fs::recursive_directory_iterator(root))
    out.push_back(fs::relative(entry.path(), root).string());
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> names_in(const fs::path &dir) {
  std::vector<std::string> out;
  if (fs::exists(dir))
    for (const auto &entry : fs::directory_iterator(dir))
      out.push_back(entry.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

// A device file as a person could write it; `edit` changes the JSON before it is written.
template <class Edit> void write_device_json(const fs::path &dir, const std::string &file, Edit edit) {
  nlohmann::json j = {{"version", 1},
                      {"id", kDevA},
                      {"name", "gpu0"},
                      {"type", "gpu"},
                      {"pci_address", "0000:a2:00.0"},
                      {"vendor_id", "10de"},
                      {"device_id", "26b9"},
                      {"iommu_group", 3},
                      {"created_at", 1},
                      {"attached_to", ""},
                      {"host_driver", nullptr}};
  edit(j);
  write_text(dir / "devices" / file, j.dump(2));
}

class StoreTest : public ::testing::Test {
protected:
  void SetUp() override {
    const char *tmpdir = std::getenv("TMPDIR");
    std::string templ = std::string(tmpdir && *tmpdir ? tmpdir : "/tmp") + "/hostdev-store-test-XXXXXX";
    ASSERT_NE(::mkdtemp(templ.data()), nullptr);
    root_ = templ;
    dir_ = root_ / "state";
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  fs::path root_; // the test's own directory
  fs::path dir_;  // the store, one level below, so that "../.." escapes would still land inside root_
};

TEST_F(StoreTest, ConstructorCreatesPrivateFolders) {
  Store store(dir_.string());
  EXPECT_EQ(store.dir(), dir_.string());
  EXPECT_EQ(names_in(dir_), (std::vector<std::string>{"devices", "instances", "journal", "mdevs", "sriov", "vf-health",
                                                      "vgpu-types", "vgpus"}));
  struct stat st {};
  ASSERT_EQ(::stat(dir_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700U);
  EXPECT_TRUE(store.load().empty());
  // A second Store on the existing tree is fine.
  EXPECT_NO_THROW(Store{dir_.string()});
}

TEST_F(StoreTest, ConstructorFailsWhenFolderCannotBeCreated) {
  write_text(root_ / "file", "x");
  EXPECT_EQ(hostdev::test::error_code_of([&] { Store s((root_ / "file").string()); }), Errc::KernelError);
  fs::create_directory(dir_);
  write_text(dir_ / "devices", "not a directory");
  EXPECT_EQ(hostdev::test::error_code_of([&] { Store s(dir_.string()); }), Errc::KernelError);
}

TEST_F(StoreTest, DevicesRoundTripWithAndWithoutOptionals) {
  {
    Store store(dir_.string());
    store.put_device(full_device());
    store.put_device(bare_device());
  }
  Store store(dir_.string());
  EXPECT_TRUE(store.devices().empty());
  EXPECT_TRUE(store.load().empty());
  ASSERT_EQ(store.devices().size(), 2U);
  expect_same(store.devices().at(kDevA), full_device());
  expect_same(store.devices().at(kDevB), bare_device());
  EXPECT_FALSE(store.devices().at(kDevB).iommu_group.has_value());
  EXPECT_FALSE(store.devices().at(kDevB).host_driver.has_value());

  auto j = nlohmann::json::parse(read_text(dir_ / "devices" / (kDevB + ".json")));
  EXPECT_EQ(j.at("version"), 1);
  EXPECT_TRUE(j.at("iommu_group").is_null());
  EXPECT_TRUE(j.at("host_driver").is_null());
  EXPECT_EQ(j.at("attached_to"), "");
  auto full = nlohmann::json::parse(read_text(dir_ / "devices" / (kDevA + ".json")));
  EXPECT_EQ(full.at("iommu_group"), 42);
  EXPECT_EQ(full.at("host_driver"), "nvidia");
  EXPECT_EQ(full.at("created_at").get<std::uint64_t>(), 1700000000123456ULL);
  // Human readable: indented, one field a line.
  EXPECT_THAT(read_text(dir_ / "devices" / (kDevA + ".json")), HasSubstr("\n  \"name\": \"gpu0\""));
}

TEST_F(StoreTest, InstancesMdevsIntentsRoundTrip) {
  InstanceRecord empty_instance;
  empty_instance.id = kInst2;
  empty_instance.name = "bare";
  empty_instance.image = "debian";
  Intent empty_intent{"cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd", "delete-instance", "", {}, "", 5, ""};
  {
    Store store(dir_.string());
    store.put_instance(full_instance());
    store.put_instance(empty_instance);
    store.put_mdev(full_mdev());
    store.put_intent(full_intent());
    store.put_intent(empty_intent);
  }
  Store store(dir_.string());
  EXPECT_TRUE(store.load().empty());
  ASSERT_EQ(store.instances().size(), 2U);
  expect_same(store.instances().at(kInst), full_instance());
  expect_same(store.instances().at(kInst2), empty_instance);
  ASSERT_EQ(store.mdevs().size(), 1U);
  expect_same(store.mdevs().at(kUuid), full_mdev());
  ASSERT_EQ(store.intents().size(), 2U);
  expect_same(store.intents().at(kIntent), full_intent());
  expect_same(store.intents().at(empty_intent.id), empty_intent);
  EXPECT_TRUE(fs::exists(dir_ / "mdevs" / (kUuid + ".json")));
  EXPECT_TRUE(fs::exists(dir_ / "journal" / (kIntent + ".json")));
  auto j = nlohmann::json::parse(read_text(dir_ / "instances" / (kInst + ".json")));
  EXPECT_EQ(j.at("version"), 1);
  EXPECT_EQ(j.at("owner_uid"), 4000000000U);
}

TEST_F(StoreTest, OverwriteReplacesTheOneFile) {
  Store store(dir_.string());
  DeviceRecord d = full_device();
  store.put_device(d);
  d.name = "renamed";
  d.attached_to = "";
  store.put_device(d);
  EXPECT_EQ(names_in(dir_ / "devices"), std::vector<std::string>{kDevA + ".json"});
  EXPECT_EQ(store.devices().at(kDevA).name, "renamed");
  Store again(dir_.string());
  EXPECT_TRUE(again.load().empty());
  EXPECT_EQ(again.devices().at(kDevA).name, "renamed");
  EXPECT_EQ(again.devices().at(kDevA).attached_to, "");
}

// The daemon takes a new snapshot only when the store's revision (or the model's) moved.
TEST_F(StoreTest, EveryChangeAndOnlyAChangeMovesTheRevision) {
  Store store(dir_.string());
  auto rev = store.revision();
  store.put_device(full_device());
  EXPECT_GT(store.revision(), rev);
  rev = store.revision();
  (void)store.devices();
  (void)store.find_device(kDevA);
  store.remove_device("ffffffffffffffffffffffffffffffff"); // not there: nothing changes
  EXPECT_EQ(store.revision(), rev);
  store.remove_device(kDevA);
  EXPECT_GT(store.revision(), rev);
  rev = store.revision();
  EXPECT_THROW(store.put_device([] {
    auto d = full_device();
    d.id = "../bad";
    return d;
  }()),
               Error);
  EXPECT_EQ(store.revision(), rev) << "a refused record changes nothing";
  (void)store.load();
  EXPECT_GT(store.revision(), rev);
}

TEST_F(StoreTest, FailedWriteKeepsOldFileAndMemory) {
  Store store(dir_.string());
  store.put_device(full_device());
  const fs::path file = dir_ / "devices" / (kDevA + ".json");
  const std::string before = read_text(file);

  // RLIMIT_FSIZE makes write() fail with EFBIG even for root, after a short write.
  DeviceRecord changed = full_device();
  changed.name = "changed";
  struct rlimit old {};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old), 0);
  auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
  struct rlimit small = old;
  small.rlim_cur = 16;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  Errc code = Errc::NotFound;
  try {
    store.put_device(changed);
  } catch (const Error &e) {
    code = e.code();
  }
  ::setrlimit(RLIMIT_FSIZE, &old);
  std::signal(SIGXFSZ, old_handler);

  EXPECT_EQ(code, Errc::KernelError);
  EXPECT_EQ(read_text(file), before);
  EXPECT_EQ(store.devices().at(kDevA).name, "gpu0");
  EXPECT_EQ(names_in(dir_ / "devices"), std::vector<std::string>{kDevA + ".json"});
}

TEST_F(StoreTest, FolderReplacedByFileFailsPutAndRemoveWithoutTouchingMemory) {
  Store store(dir_.string());
  store.put_device(full_device());
  store.put_mdev(full_mdev());
  fs::remove_all(dir_ / "devices");
  write_text(dir_ / "devices", "I am a file now");
  fs::remove_all(dir_ / "mdevs");
  write_text(dir_ / "mdevs", "me too");

  EXPECT_EQ(hostdev::test::error_code_of([&] { store.put_device(bare_device()); }), Errc::KernelError);
  EXPECT_EQ(store.devices().size(), 1U);
  EXPECT_EQ(store.devices().count(kDevB), 0U);
  EXPECT_EQ(hostdev::test::error_code_of([&] { store.remove_device(kDevA); }), Errc::KernelError);
  EXPECT_EQ(store.devices().count(kDevA), 1U);
  EXPECT_EQ(hostdev::test::error_code_of([&] { store.remove_mdev(kUuid); }), Errc::KernelError);
  EXPECT_EQ(store.mdevs().count(kUuid), 1U);
  EXPECT_EQ(read_text(dir_ / "devices"), "I am a file now");
}

TEST_F(StoreTest, CorruptDeviceFilesAreMovedAsideOthersLoad) {
  Store store(dir_.string());
  store.put_device(bare_device());
  const std::string bad_json = "11111111111111111111111111111111.json";
  const std::string wrong_type = "22222222222222222222222222222222.json";
  const std::string missing = "33333333333333333333333333333333.json";
  const std::string mismatch = "44444444444444444444444444444444.json";
  const std::string bad_name = "x.json";
  const std::string old_version = "55555555555555555555555555555555.json";
  write_text(dir_ / "devices" / bad_json, "{\"version\": 1, \"id\": ");
  write_device_json(dir_, wrong_type, [](auto &j) {
    j["id"] = "22222222222222222222222222222222";
    j["iommu_group"] = "seven";
  });
  write_device_json(dir_, missing, [](auto &j) {
    j["id"] = "33333333333333333333333333333333";
    j.erase("pci_address");
  });
  write_device_json(dir_, mismatch, [](auto &) {}); // its id is kDevA
  write_device_json(dir_, bad_name, [](auto &j) { j["id"] = "x"; });
  write_device_json(dir_, old_version, [](auto &j) {
    j["id"] = "55555555555555555555555555555555";
    j["version"] = 2;
  });
  write_text(dir_ / "devices" / "README", "not json, ignored");

  auto warnings = store.load();
  ASSERT_EQ(warnings.size(), 6U) << ::testing::PrintToString(warnings);
  for (const auto &w : warnings) {
    EXPECT_THAT(w, StartsWith("moved corrupt file devices/"));
    EXPECT_THAT(w, HasSubstr(" aside to corrupt/devices-"));
  }
  EXPECT_THAT(warnings, ::testing::Contains(HasSubstr("iommu_group")));
  EXPECT_THAT(warnings, ::testing::Contains(HasSubstr("pci_address")));
  EXPECT_THAT(warnings, ::testing::Contains(HasSubstr("does not match")));

  ASSERT_EQ(store.devices().size(), 1U);
  expect_same(store.devices().at(kDevB), bare_device());
  EXPECT_EQ(names_in(dir_ / "devices"), (std::vector<std::string>{"README", kDevB + ".json"}));
  auto corrupt = names_in(dir_ / "corrupt");
  ASSERT_EQ(corrupt.size(), 6U);
  for (const auto &name : {bad_json, wrong_type, missing, mismatch, bad_name, old_version})
    EXPECT_THAT(corrupt, ::testing::Contains(::testing::MatchesRegex("devices-" + name + "\\.[0-9]+")));
  struct stat st {};
  ASSERT_EQ(::stat((dir_ / "corrupt").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700U);

  // The next load is clean.
  EXPECT_TRUE(store.load().empty());
}

TEST_F(StoreTest, CorruptFilesInOtherFoldersAreMovedAside) {
  Store store(dir_.string());
  store.put_instance(full_instance());
  store.put_mdev(full_mdev());
  store.put_intent(full_intent());
  write_text(dir_ / "instances" / (kInst2 + ".json"), "[]");
  write_text(dir_ / "mdevs" / "4B20D080-1B54-4048-85B3-A6A62D165C01.json",
             read_text(dir_ / "mdevs" / (kUuid + ".json")));
  auto intent = nlohmann::json::parse(read_text(dir_ / "journal" / (kIntent + ".json")));
  intent["bound_devices"] = {1, 2};
  write_text(dir_ / "journal" / "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd.json", intent.dump());

  auto warnings = store.load();
  EXPECT_EQ(warnings.size(), 3U) << ::testing::PrintToString(warnings);
  EXPECT_THAT(warnings, ::testing::Contains(StartsWith("moved corrupt file instances/" + kInst2 + ".json")));
  EXPECT_THAT(warnings, ::testing::Contains(StartsWith("moved corrupt file mdevs/4B20D080")));
  EXPECT_THAT(warnings, ::testing::Contains(StartsWith("moved corrupt file journal/cdcd")));
  EXPECT_EQ(store.instances().size(), 1U);
  EXPECT_EQ(store.mdevs().size(), 1U);
  EXPECT_EQ(store.intents().size(), 1U);
  EXPECT_EQ(names_in(dir_ / "corrupt").size(), 3U);
}

TEST_F(StoreTest, StrayTempFilesAreRemoved) {
  Store store(dir_.string());
  store.put_device(full_device());
  write_text(dir_ / "devices" / (kDevB + ".json.tmp.Ab3dEf"), "{\"half\":");
  write_text(dir_ / "journal" / (kIntent + ".json.tmp.XyZ123"), "");
  auto warnings = store.load();
  ASSERT_EQ(warnings.size(), 2U) << ::testing::PrintToString(warnings);
  EXPECT_THAT(warnings, ::testing::Contains(HasSubstr("devices/" + kDevB + ".json.tmp.Ab3dEf")));
  EXPECT_THAT(warnings, ::testing::Contains(HasSubstr("journal/" + kIntent + ".json.tmp.XyZ123")));
  EXPECT_EQ(names_in(dir_ / "devices"), std::vector<std::string>{kDevA + ".json"});
  EXPECT_TRUE(names_in(dir_ / "journal").empty());
  EXPECT_FALSE(fs::exists(dir_ / "corrupt"));
  EXPECT_EQ(store.devices().size(), 1U);
}

TEST_F(StoreTest, InvalidIdsAreRefusedAndNothingIsWritten) {
  Store store(dir_.string());
  const auto before = tree(root_);
  for (const std::string &bad :
       std::vector<std::string>{"../etc", "../../escape", "ABC", "", "0123456789ABCDEF0123456789ABCDEF",
                                "0123456789abcdef0123456789abcde/", kUuid}) {
    SCOPED_TRACE("id '" + bad + "'");
    DeviceRecord d = full_device();
    d.id = bad;
    EXPECT_EQ(hostdev::test::error_code_of([&] { store.put_device(d); }), Errc::InvalidArgument);
    InstanceRecord i = full_instance();
    i.id = bad;
    EXPECT_EQ(hostdev::test::error_code_of([&] { store.put_instance(i); }), Errc::InvalidArgument);
    Intent t = full_intent();
    t.id = bad;
    EXPECT_EQ(hostdev::test::error_code_of([&] { store.put_intent(t); }), Errc::InvalidArgument);
    EXPECT_EQ(hostdev::test::error_code_of([&] { store.remove_device(bad); }), Errc::InvalidArgument);
    EXPECT_EQ(hostdev::test::error_code_of([&] { store.remove_instance(bad); }), Errc::InvalidArgument);
    EXPECT_EQ(hostdev::test::error_code_of([&] { store.remove_intent(bad); }), Errc::InvalidArgument);
  }
  for (const std::string &bad : std::vector<std::string>{"../etc", "", "4B20D080-1B54-4048-85B3-A6A62D165C01", kDevA,
                                                         "../../4b20d080-1b54-4048-85b3-a6a62d165c"}) {
    SCOPED_TRACE("uuid '" + bad + "'");
    MdevRecord m = full_mdev();
    m.uuid = bad;
    EXPECT_EQ(hostdev::test::error_code_of([&] { store.put_mdev(m); }), Errc::InvalidArgument);
    EXPECT_EQ(hostdev::test::error_code_of([&] { store.remove_mdev(bad); }), Errc::InvalidArgument);
  }
  EXPECT_EQ(tree(root_), before);
  EXPECT_TRUE(store.devices().empty());
  EXPECT_TRUE(store.instances().empty());
  EXPECT_TRUE(store.mdevs().empty());
  EXPECT_TRUE(store.intents().empty());
}

TEST_F(StoreTest, RemoveIsIdempotent) {
  Store store(dir_.string());
  store.put_device(full_device());
  store.put_instance(full_instance());
  store.put_mdev(full_mdev());
  store.put_intent(full_intent());
  store.remove_device(kDevA);
  store.remove_device(kDevA);
  store.remove_instance(kInst);
  store.remove_mdev(kUuid);
  store.remove_mdev(kUuid);
  store.remove_intent(kIntent);
  store.remove_intent(kIntent);
  store.remove_instance(kInst2); // never existed
  EXPECT_TRUE(store.devices().empty());
  EXPECT_TRUE(store.instances().empty());
  EXPECT_TRUE(store.mdevs().empty());
  EXPECT_TRUE(store.intents().empty());
  for (const char *folder : {"devices", "instances", "mdevs", "journal"})
    EXPECT_TRUE(names_in(dir_ / folder).empty()) << folder;

  // A file already gone from disk (ENOENT) is fine; memory still follows.
  store.put_device(bare_device());
  fs::remove(dir_ / "devices" / (kDevB + ".json"));
  EXPECT_NO_THROW(store.remove_device(kDevB));
  EXPECT_TRUE(store.devices().empty());
  Store again(dir_.string());
  EXPECT_TRUE(again.load().empty());
  EXPECT_TRUE(again.devices().empty());
}

TEST_F(StoreTest, LoadClearsMemory) {
  Store store(dir_.string());
  store.put_device(full_device());
  store.put_intent(full_intent());
  fs::remove(dir_ / "devices" / (kDevA + ".json"));
  fs::remove(dir_ / "journal" / (kIntent + ".json"));
  EXPECT_TRUE(store.load().empty());
  EXPECT_TRUE(store.devices().empty());
  EXPECT_TRUE(store.intents().empty());
}

TEST_F(StoreTest, FindByIdNameAndAddress) {
  Store store(dir_.string());
  store.put_device(full_device());
  DeviceRecord tricky = bare_device();
  tricky.name = kDevA; // a name that looks like the other device's id: the id wins
  store.put_device(tricky);
  store.put_instance(full_instance());

  ASSERT_NE(store.find_device(kDevA), nullptr);
  EXPECT_EQ(store.find_device(kDevA)->name, "gpu0");
  ASSERT_NE(store.find_device("gpu0"), nullptr);
  EXPECT_EQ(store.find_device("gpu0")->id, kDevA);
  ASSERT_NE(store.find_device(kDevB), nullptr);
  EXPECT_EQ(store.find_device(kDevB)->id, kDevB);
  EXPECT_EQ(store.find_device("nope"), nullptr);
  EXPECT_EQ(store.find_device(""), nullptr);

  ASSERT_NE(store.find_device_by_address("0000:03:00.1"), nullptr);
  EXPECT_EQ(store.find_device_by_address("0000:03:00.1")->id, kDevB);
  EXPECT_EQ(store.find_device_by_address("0000:03:00"), nullptr);
  EXPECT_EQ(store.find_device_by_address("0000:A2:00.0"), nullptr);

  ASSERT_NE(store.find_instance("vm1"), nullptr);
  EXPECT_EQ(store.find_instance("vm1")->id, kInst);
  ASSERT_NE(store.find_instance(kInst), nullptr);
  EXPECT_EQ(store.find_instance(kInst)->name, "vm1");
  EXPECT_EQ(store.find_instance("vm2"), nullptr);
}

TEST_F(StoreTest, PutRefusesDuplicateNameOrAddress) {
  Store store(dir_.string());
  store.put_device(full_device());
  DeviceRecord same_name = bare_device();
  same_name.name = "gpu0";
  EXPECT_EQ(hostdev::test::error_code_of([&] { store.put_device(same_name); }), Errc::NameExists);
  DeviceRecord same_address = bare_device();
  same_address.pci_address = "0000:a2:00.0";
  EXPECT_EQ(hostdev::test::error_code_of([&] { store.put_device(same_address); }), Errc::AlreadyExists);
  store.put_instance(full_instance());
  InstanceRecord other = full_instance();
  other.id = kInst2;
  EXPECT_EQ(hostdev::test::error_code_of([&] { store.put_instance(other); }), Errc::NameExists);
  EXPECT_EQ(store.devices().size(), 1U);
  EXPECT_EQ(store.instances().size(), 1U);
  EXPECT_EQ(names_in(dir_ / "devices").size(), 1U);
  EXPECT_EQ(names_in(dir_ / "instances").size(), 1U);
}

TEST_F(StoreTest, DuplicatesAcrossFilesKeepTheOldest) {
  Store store(dir_.string());
  // "ffff..." sorts after "1111..." but is older: the older one must win whatever the directory order.
  const std::string older = "ffffffffffffffffffffffffffffffff";
  const std::string newer = "11111111111111111111111111111111";
  const std::string addr_dup = "22222222222222222222222222222222";
  write_device_json(dir_, older + ".json", [&](auto &j) {
    j["id"] = older;
    j["created_at"] = 100;
  });
  write_device_json(dir_, newer + ".json", [&](auto &j) {
    j["id"] = newer;
    j["pci_address"] = "0000:05:00.0";
    j["created_at"] = 200;
  });
  write_device_json(dir_, addr_dup + ".json", [&](auto &j) {
    j["id"] = addr_dup;
    j["name"] = "other";
    j["created_at"] = 300;
  });
  InstanceRecord a = full_instance();
  InstanceRecord b = full_instance();
  b.id = kInst2;
  b.created_at = a.created_at - 1;
  store.put_instance(a);
  write_text(dir_ / "instances" / (kInst2 + ".json"), [&] {
    auto j = nlohmann::json::parse(read_text(dir_ / "instances" / (kInst + ".json")));
    j["id"] = kInst2;
    j["created_at"] = b.created_at;
    return j.dump();
  }());

  auto warnings = store.load();
  ASSERT_EQ(warnings.size(), 3U) << ::testing::PrintToString(warnings);
  EXPECT_THAT(warnings, ::testing::Contains(AllOf(StartsWith("moved corrupt file devices/" + newer + ".json"),
                                                  HasSubstr("duplicate name 'gpu0'"))));
  EXPECT_THAT(warnings, ::testing::Contains(AllOf(StartsWith("moved corrupt file devices/" + addr_dup + ".json"),
                                                  HasSubstr("duplicate address '0000:a2:00.0'"))));
  EXPECT_THAT(warnings, ::testing::Contains(AllOf(StartsWith("moved corrupt file instances/" + kInst + ".json"),
                                                  HasSubstr("duplicate name 'vm1'"))));
  ASSERT_EQ(store.devices().size(), 1U);
  EXPECT_EQ(store.devices().begin()->first, older);
  ASSERT_EQ(store.instances().size(), 1U);
  EXPECT_EQ(store.instances().begin()->first, kInst2);
  EXPECT_EQ(names_in(dir_ / "devices"), std::vector<std::string>{older + ".json"});
  EXPECT_EQ(names_in(dir_ / "corrupt").size(), 3U);
}

} // namespace

// ------------------------------------------------------------------------------------ content, not just shape

TEST_F(StoreTest, RecordsAreCheckedWithTheAPIsValidatorsAndLimits) {
  Store store(dir_.string());
  store.put_device(bare_device());
  auto instance_file = [&](const std::string &id, const std::function<void(nlohmann::json &)> &edit) {
    nlohmann::json j = {{"version", 1},
                        {"id", id},
                        {"name", "vm-" + id.substr(0, 4)},
                        {"image", ""},
                        {"devices", nlohmann::json::array()},
                        {"gpu_profile", ""},
                        {"mdev_uuid", ""},
                        {"mdev_parent", ""},
                        {"owner_uid", 0},
                        {"created_at", 1}};
    edit(j);
    write_text(dir_ / "instances" / (id + ".json"), j.dump());
  };
  const std::string traversal_uuid = "a1111111111111111111111111111111";
  const std::string huge_image = "a2222222222222222222222222222222";
  const std::string bad_name = "a3333333333333333333333333333333";
  const std::string bad_device_ref = "a4444444444444444444444444444444";
  const std::string good = "a5555555555555555555555555555555";
  instance_file(traversal_uuid, [](auto &j) { j["mdev_uuid"] = "../../../../../../etc"; });
  instance_file(huge_image, [](auto &j) { j["image"] = std::string(40 << 20, 'x'); });
  instance_file(bad_name, [](auto &j) { j["name"] = "../x"; });
  instance_file(bad_device_ref, [](auto &j) { j["devices"] = {"../../etc/passwd"}; });
  instance_file(good, [](auto &) {});
  write_device_json(dir_, "b1111111111111111111111111111111.json", [](auto &j) {
    j["id"] = "b1111111111111111111111111111111";
    j["name"] = "evil";
    j["pci_address"] = "../../../../etc";
  });
  write_device_json(dir_, "b2222222222222222222222222222222.json", [](auto &j) {
    j["id"] = "b2222222222222222222222222222222";
    j["name"] = "b2222222222222222222222222222222"; // spelled like another object's id
    j["pci_address"] = "0000:07:00.0";
  });
  write_device_json(dir_, "b3333333333333333333333333333333.json", [](auto &j) {
    j["id"] = "b3333333333333333333333333333333";
    j["name"] = "drv";
    j["pci_address"] = "0000:08:00.0";
    j["host_driver"] = "../../module";
  });

  const auto warnings = store.load();
  EXPECT_EQ(warnings.size(), 7U) << ::testing::PrintToString(warnings);
  for (const auto &w : warnings)
    EXPECT_THAT(w, StartsWith("moved corrupt file "));
  EXPECT_THAT(warnings, ::testing::Contains(HasSubstr("mdev_uuid")));
  EXPECT_THAT(warnings, ::testing::Contains(HasSubstr("too large")));
  EXPECT_THAT(warnings, ::testing::Contains(HasSubstr("pci_address")));
  EXPECT_EQ(store.instances().size(), 1U);
  EXPECT_EQ(store.instances().count(good), 1U);
  EXPECT_EQ(store.devices().size(), 1U);
  EXPECT_EQ(names_in(dir_ / "corrupt").size(), 7U);
}

TEST_F(StoreTest, ASymlinkedCorruptFolderIsNeverFollowed) {
  Store store(dir_.string());
  const fs::path outside = root_ / "outside";
  fs::create_directories(outside);
  fs::create_directory_symlink(outside, dir_ / "corrupt");
  write_text(dir_ / "devices" / "11111111111111111111111111111111.json", "{ not json");
  const auto warnings = store.load();
  ASSERT_EQ(warnings.size(), 1U) << ::testing::PrintToString(warnings);
  EXPECT_THAT(warnings[0], HasSubstr("could not move it aside"));
  EXPECT_TRUE(names_in(outside).empty()) << "nothing may be moved out of the state directory";
  EXPECT_TRUE(fs::exists(dir_ / "devices" / "11111111111111111111111111111111.json"));
}

TEST_F(StoreTest, SymlinkedFoldersAreRefused) {
  const fs::path outside = root_ / "outside";
  fs::create_directories(outside);
  fs::create_directories(dir_);
  fs::create_directory_symlink(outside, dir_ / "devices");
  EXPECT_EQ(hostdev::test::error_code_of([&] { Store store(dir_.string()); }), Errc::KernelError);
  EXPECT_TRUE(names_in(outside).empty());
}

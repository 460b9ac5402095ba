// Speed of the core's reads on the canned vGPU host (2 x L40S, 64 VF parents, 4 profiles each) and of the store.
// Run: meson test -C build --benchmark --verbose   (or build/tests/bench/bench-core directly)
#include "core/ids.hpp"
#include "core/mdev.hpp"
#include "core/pci.hpp"
#include "core/service.hpp"
#include "core/store.hpp"

#include "fixtures/fake_host.hpp"

#include <benchmark/benchmark.h>

#include <filesystem>

using namespace hostdev::core;
using namespace hostdev::test;

namespace {

struct VgpuHost {
  FakeHost host;
  VgpuHost() { make_vgpu_host(host); }
};

VgpuHost &vgpu() {
  static VgpuHost h;
  return h;
}

void BM_DiscoverAllFunctions(benchmark::State &state) {
  Sysfs sysfs(vgpu().host.root());
  auto names = make_no_names();
  PciBus bus(sysfs, *names);
  for (auto _ : state)
    benchmark::DoNotOptimize(bus.discover());
  state.counters["functions"] = static_cast<double>(bus.discover().size());
}
BENCHMARK(BM_DiscoverAllFunctions)->Unit(benchmark::kMillisecond);

void BM_FindOneFunction(benchmark::State &state) {
  Sysfs sysfs(vgpu().host.root());
  auto names = make_no_names();
  PciBus bus(sysfs, *names);
  for (auto _ : state)
    benchmark::DoNotOptimize(bus.find(kPf0Addr));
}
BENCHMARK(BM_FindOneFunction)->Unit(benchmark::kMicrosecond);

void BM_ProfilesCachedMetadata(benchmark::State &state) {
  Sysfs sysfs(vgpu().host.root());
  MdevBus mdev(sysfs);
  mdev.profiles(); // warm the per-parent metadata cache
  for (auto _ : state)
    benchmark::DoNotOptimize(mdev.profiles());
}
BENCHMARK(BM_ProfilesCachedMetadata)->Unit(benchmark::kMillisecond);

void BM_ProfilesFullRescan(benchmark::State &state) {
  Sysfs sysfs(vgpu().host.root());
  MdevBus mdev(sysfs);
  for (auto _ : state) {
    mdev.rescan();
    benchmark::DoNotOptimize(mdev.profiles());
  }
}
BENCHMARK(BM_ProfilesFullRescan)->Unit(benchmark::kMillisecond);

void BM_GpuResources(benchmark::State &state) {
  Sysfs sysfs(vgpu().host.root());
  char tmpl[] = "/dev/shm/hostdev-bench-XXXXXX";
  std::string dir = ::mkdtemp(tmpl);
  Store store(dir);
  auto names = make_no_names();
  Service service(sysfs, store, *names);
  for (auto _ : state)
    benchmark::DoNotOptimize(service.gpu_resources());
  std::filesystem::remove_all(dir);
}
BENCHMARK(BM_GpuResources)->Unit(benchmark::kMillisecond);

void BM_StoreLoad(benchmark::State &state) {
  char tmpl[] = "/dev/shm/hostdev-bench-XXXXXX";
  std::string dir = ::mkdtemp(tmpl);
  {
    Store store(dir);
    for (int i = 0; i < state.range(0); ++i) {
      DeviceRecord d;
      d.id = new_object_id();
      d.name = "dev" + std::to_string(i);
      d.type = "pci";
      char addr[32];
      std::snprintf(addr, sizeof addr, "0000:%02x:%02x.%d", i / 256, (i / 8) % 32, i % 8);
      d.pci_address = addr;
      d.vendor_id = "8086";
      d.device_id = "1533";
      d.created_at = now_usec();
      store.put_device(d);
    }
  }
  for (auto _ : state) {
    Store store(dir);
    benchmark::DoNotOptimize(store.load());
  }
  std::filesystem::remove_all(dir);
}
BENCHMARK(BM_StoreLoad)->Arg(100)->Arg(1000)->Unit(benchmark::kMillisecond);

void BM_StorePutDevice(benchmark::State &state) {
  char tmpl[] = "/tmp/hostdev-bench-XXXXXX"; // a real disk: the fsyncs are the cost
  std::string dir = ::mkdtemp(tmpl);
  Store store(dir);
  DeviceRecord d;
  d.id = new_object_id();
  d.name = "dev";
  d.type = "pci";
  d.pci_address = "0000:01:00.0";
  d.vendor_id = "8086";
  d.device_id = "1533";
  for (auto _ : state) {
    d.created_at = now_usec();
    store.put_device(d);
  }
  std::filesystem::remove_all(dir);
}
BENCHMARK(BM_StorePutDevice)->Unit(benchmark::kMicrosecond);

} // namespace

BENCHMARK_MAIN();

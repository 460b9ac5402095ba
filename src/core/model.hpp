// The live model of the host: every PCI function, mdev parent (with its types' availability), mdev and
// vendor-VFIO VF, plus the few host-wide facts, read once and then kept true piece by piece. What to read again
// comes from kernel uevents (change_of) and from hostdev's own sysfs writes (change_of_write); a HostModel
// re-reads exactly what a change names and what that implies from what it knew before:
//   * a PCI function: the function (or its disappearance), its PF (whose sriov_numvfs and virtfnN links move with
//     its VFs), the VFs that a re-read PF gained or lost, its mdev parent entry and its vendor-VFIO state; a
//     vanished function takes its parent entry and its mdevs with it;
//   * an mdev: the mdev (or its disappearance) and its parent's availability (the parent's other types share
//     the same capacity, so the whole parent is read again);
//   * an mdev parent: the parent's availability (or its disappearance);
//   * IOMMU groups' members are derived from the functions' groups, never listed per function.
// Anything it cannot place (a "move", a rescan request, a lost batch of uevents) is a full re-scan.
// Core code: no D-Bus, no locking (the daemon's worker owns it under the core lock).
#pragma once

#include "core/mdev.hpp"
#include "core/pci.hpp"
#include "core/sysfs.hpp"
#include "core/uevent.hpp"
#include "core/vendor_vgpu.hpp"

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace hostdev::core {

// What to read again.
struct ModelChange {
  std::set<std::string> functions; // normalised PCI addresses
  std::set<std::string> parents;   // mdev parent names
  std::set<std::string> mdevs;     // normalised UUIDs
  bool parent_list = false;        // parents may have appeared that no function names (mtty): list the class
  bool host = false;               // the host-wide facts (vfio modules, IOMMU, hugepages)
  bool everything = false;         // a full re-scan

  bool empty() const noexcept {
    return functions.empty() && parents.empty() && mdevs.empty() && !parent_list && !host && !everything;
  }
  void merge(const ModelChange &other);
  static ModelChange all() {
    ModelChange c;
    c.everything = true;
    return c;
  }
};

// What one kernel uevent says may have changed. Empty for events of no concern to the model.
ModelChange change_of(const Uevent &event);

// What one sysfs write of hostdev's (`path` relative to the root, as Sysfs::write got it) may have changed:
// drivers/<drv>/bind|unbind and drivers_probe name their function in `value`, an mdev type's create its UUID.
// A write it cannot place is a full re-scan.
ModelChange change_of_write(std::string_view path, std::string_view value);

class HostModel {
public:
  HostModel(const Sysfs &sysfs, const PciBus &pci, const MdevBus &mdev, const VendorVgpu &vendor)
      : sysfs_(sysfs), pci_(pci), mdev_(mdev), vendor_(vendor) {}

  // Reads everything.
  void rescan();
  // Re-reads what `change` names and what it implies (see the top of this file). A model never scanned scans.
  void update(const ModelChange &change);
  bool scanned() const noexcept { return scanned_; }
  // Bumped by every rescan and every update that read anything: equal revisions, the same reading.
  std::uint64_t revision() const noexcept { return revision_; }

  // The reading, as a HostView holds it: functions sorted by address with their group_members.
  const std::vector<PciFunction> &functions() const { return *sorted_; }
  // The same list, shared: made once per update, so a view of the host holds it without copying every function.
  std::shared_ptr<const std::vector<PciFunction>> shared_functions() const { return sorted_; }
  std::vector<MdevParent> parents() const;
  // The same list, made once per revision and shared: a view of the host (one per snapshot, one per mutation's
  // plan) holds it without copying every parent's types. Safe from any thread that may read the model.
  std::shared_ptr<const std::vector<MdevParent>> shared_parents() const;
  std::vector<Mdev> mdevs() const;
  std::vector<VendorVf> vendor_vfs() const; // in address order
  const HostFacts &facts() const noexcept { return facts_; }

  // How much was read, for tests and the journal.
  struct Counters {
    unsigned rescans = 0;
    unsigned function_reads = 0;
    unsigned parent_reads = 0;
    unsigned mdev_reads = 0;
  };
  const Counters &counters() const noexcept { return counters_; }

private:
  void read_function(const std::string &address, std::set<std::string> &also);
  void read_parent(const std::string &name);
  void read_mdev(const std::string &uuid);
  void read_parent_list();
  void derive();

  const Sysfs &sysfs_;
  const PciBus &pci_;
  const MdevBus &mdev_;
  const VendorVgpu &vendor_;
  bool scanned_ = false;
  std::uint64_t revision_ = 0;
  std::map<std::string, PciFunction> functions_; // by address; group_members not kept here
  std::map<std::string, MdevParent> parents_;
  mutable std::mutex shared_parents_mutex_;
  mutable std::shared_ptr<const std::vector<MdevParent>> shared_parents_; // of shared_parents_revision_
  mutable std::uint64_t shared_parents_revision_ = 0;
  std::map<std::string, Mdev> mdevs_;
  std::map<std::string, VendorVf> vendor_vfs_; // by VF address
  HostFacts facts_;
  // functions_ with group_members, derived after every update (a new list: views of the old one keep it)
  std::shared_ptr<const std::vector<PciFunction>> sorted_ = std::make_shared<const std::vector<PciFunction>>();
  Counters counters_;
};

} // namespace hostdev::core

#include "cli/inspect.hpp"

#include "cli/table.hpp"
#include "core/describe.hpp"
#include "core/error.hpp"
#include "core/sysfs.hpp"
#include "core/vendor_vgpu.hpp"

#include <map>
#include <set>

namespace hostdev::cli {
namespace {

std::string yes_no(bool v, const char *yes, const char *no) { return v ? yes : no; }

} // namespace

int run_inspect(const InspectOptions &options, std::ostream &out, std::ostream &err) {
  try {
    core::Sysfs sysfs(options.sysfs_root);
    auto names = core::make_hwdb_names();
    core::PciBus bus(sysfs, *names);
    core::MdevBus mdev(sysfs);
    core::VendorVgpu vendor(sysfs);
    const auto all = bus.discover();
    const auto parents = mdev.parents();
    const auto vendor_vfs = vendor.list(all);
    const auto report =
        core::check_host(sysfs, all, static_cast<unsigned>(parents.size()), static_cast<unsigned>(vendor_vfs.size()));
    std::vector<core::PciFunction> shown;
    for (const auto &fn : all)
      if (options.all || fn.is_gpu())
        shown.push_back(fn);

    if (options.json) {
      out << core::inspect_json(report, shown, parents, vendor_vfs).dump(2) << '\n';
      return 0;
    }

    out << "Host" << (options.sysfs_root == "/" ? "" : " (sysfs root " + options.sysfs_root + ")") << '\n';
    Table host({"  CHECK", "STATE"});
    host.add({"  IOMMU", yes_no(report.iommu_enabled, "enabled", "off")});
    host.add({"  vfio-pci", yes_no(report.vfio_pci_available, "available", "missing")});
    host.add({"  vfio_iommu_type1", yes_no(report.vfio_iommu_type1_loaded, "loaded", "missing")});
    host.add(
        {"  hugepages", std::to_string(report.hugepages_free) + " free of " + std::to_string(report.hugepages_total) +
                            (report.hugepage_size_kb ? " (" + std::to_string(report.hugepage_size_kb) + " kB)" : "")});
    const auto framework = report.gpu_framework();
    host.add({"  GPU mode",
              std::string(core::gpu_mode_name(report.gpu_mode)) + (framework.empty() ? "" : " (" + framework + ")")});
    host.print(out);

    if (!report.problems.empty()) {
      out << "\nProblems\n";
      for (const auto &p : report.problems)
        out << "  - " << p.message << "\n    hint: " << p.hint << '\n';
    }

    out << '\n'
        << (options.all ? "PCI functions" : "Passthrough candidates (GPUs; --all shows every function)") << '\n';
    if (shown.empty()) {
      out << "  none found\n";
    } else {
      Table t({"ADDRESS", "ID", "CLASS", "GROUP", "DRIVER", "NUMA", "RESET", "NAME"});
      // Without --all, the VFs of one PF fold into a single line: a vGPU host has dozens.
      std::map<std::string, std::vector<const core::PciFunction *>> vfs;
      if (!options.all)
        for (const auto &fn : shown)
          if (fn.physfn)
            vfs[*fn.physfn].push_back(&fn);
      for (const auto &fn : shown) {
        if (!options.all && fn.physfn && vfs.count(*fn.physfn) && vfs[*fn.physfn].size() > 1) {
          const auto &list = vfs[*fn.physfn];
          if (list.front() != &fn)
            continue;
          std::set<std::string> drivers;
          for (const auto *vf : list)
            drivers.insert(vf->driver.value_or("-"));
          std::string drv;
          for (const auto &d : drivers)
            drv += (drv.empty() ? "" : ",") + d;
          auto group = [](const core::PciFunction *f) {
            return f->iommu_group ? std::to_string(*f->iommu_group) : "-";
          };
          t.add({fn.address + "..", core::hex4(fn.vendor_id) + ":" + core::hex4(fn.device_id),
                 core::class_hex(fn.class_code), group(list.front()) + "-" + group(list.back()), drv,
                 std::to_string(fn.numa_node), fn.reset_method.empty() ? "-" : fn.reset_method,
                 std::to_string(list.size()) + " VFs of " + *fn.physfn + " (--all lists each)"});
          continue;
        }
        std::string name = fn.vendor_name;
        if (!fn.device_name.empty())
          name += (name.empty() ? "" : " ") + fn.device_name;
        if (name.empty())
          name = "-";
        if (fn.physfn)
          name += " (VF of " + *fn.physfn + ")";
        else if (fn.sriov_totalvfs)
          name += " (SR-IOV " + std::to_string(fn.sriov_numvfs.value_or(0)) + "/" + std::to_string(*fn.sriov_totalvfs) +
                  " VFs)";
        t.add({fn.address, core::hex4(fn.vendor_id) + ":" + core::hex4(fn.device_id), core::class_hex(fn.class_code),
               fn.iommu_group ? std::to_string(*fn.iommu_group) : "-", fn.driver.value_or("-"),
               std::to_string(fn.numa_node), fn.reset_method.empty() ? "-" : fn.reset_method, name});
      }
      t.print(out);
    }

    if (!parents.empty()) {
      out << "\nvGPU / mdev profiles (" << parents.size() << " parent" << (parents.size() == 1 ? "" : "s") << ")\n";
      Table t({"PROFILE", "TYPE", "FRAMEBUFFER", "AVAILABLE", "PARENTS"});
      struct Row {
        std::string type;
        unsigned fb = 0, available = 0, parents = 0;
      };
      std::map<std::string, Row> rows;
      for (const auto &p : parents)
        for (const auto &ty : p.types) {
          auto &r = rows[ty.name];
          r.type = r.type.empty() ? ty.id : r.type;
          r.fb = ty.framebuffer_mb;
          r.available += ty.available;
          ++r.parents;
        }
      for (const auto &[name, r] : rows)
        t.add({name, r.type, r.fb ? std::to_string(r.fb) + " MB" : "-", std::to_string(r.available),
               std::to_string(r.parents)});
      t.print(out);
    }
    if (!vendor_vfs.empty()) {
      // NVIDIA's vendor-specific VFIO framework: one vGPU per VF, a type id in nvidia/current_vgpu_type.
      out << "\nvGPU profiles, vendor-specific VFIO (" << vendor_vfs.size() << " VF"
          << (vendor_vfs.size() == 1 ? "" : "s") << ")\n";
      struct Row {
        std::string type;
        unsigned fb = 0, free_vfs = 0;
      };
      std::map<std::string, Row> rows;
      unsigned assigned = 0;
      for (const auto &vf : vendor_vfs) {
        assigned += vf.current_type != 0 ? 1 : 0;
        for (const auto &ty : vf.creatable) {
          auto &r = rows[ty.name];
          r.type = std::to_string(ty.id);
          r.fb = ty.framebuffer_mb;
          ++r.free_vfs;
        }
      }
      Table t({"PROFILE", "TYPE", "FRAMEBUFFER", "FREE VFS LISTING IT"});
      for (const auto &[name, r] : rows)
        t.add({name, r.type, r.fb ? std::to_string(r.fb) + " MB" : "-", std::to_string(r.free_vfs)});
      t.print(out);
      out << "  " << assigned << " of " << vendor_vfs.size() << " VFs have a vGPU\n";
    }
    return 0;
  } catch (const core::Error &e) {
    err << "hostdevctl: " << e.what() << '\n';
    return 1;
  }
}

} // namespace hostdev::cli

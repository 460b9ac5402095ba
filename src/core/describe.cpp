#include "core/describe.hpp"

namespace hostdev::core {
namespace {

template <class T> nlohmann::json or_null(const std::optional<T> &v) {
  return v ? nlohmann::json(*v) : nlohmann::json();
}

} // namespace

nlohmann::json device_json(const PciFunction &fn) {
  nlohmann::json j;
  j["pci_address"] = fn.address;
  j["vendor_id"] = hex4(fn.vendor_id);
  j["device_id"] = hex4(fn.device_id);
  j["subsystem_vendor_id"] = hex4(fn.subsystem_vendor_id);
  j["subsystem_device_id"] = hex4(fn.subsystem_device_id);
  j["vendor_name"] = fn.vendor_name;
  j["device_name"] = fn.device_name;
  j["class"] = class_hex(fn.class_code);
  j["revision"] = fn.revision;
  j["iommu_group"] = or_null(fn.iommu_group);
  j["iommu_group_members"] = fn.group_members;
  j["driver"] = or_null(fn.driver);
  j["driver_override"] = or_null(fn.driver_override);
  j["is_gpu"] = fn.is_gpu();
  j["numa_node"] = fn.numa_node;
  j["reset_method"] = fn.reset_method;
  j["sriov_totalvfs"] = or_null(fn.sriov_totalvfs);
  j["sriov_numvfs"] = or_null(fn.sriov_numvfs);
  j["virtfns"] = fn.virtfns;
  j["physfn"] = or_null(fn.physfn);
  return j;
}

nlohmann::json inspect_json(const HostReport &report, const std::vector<PciFunction> &devices,
                            const std::vector<MdevParent> &parents, const std::vector<VendorVf> &vendor_vfs) {
  nlohmann::json j;
  j["iommu_enabled"] = report.iommu_enabled;
  j["vfio_available"] = report.vfio_available();
  j["vfio_pci_available"] = report.vfio_pci_available;
  j["vfio_iommu_type1_loaded"] = report.vfio_iommu_type1_loaded;
  j["hugepages"] = {
      {"total", report.hugepages_total}, {"free", report.hugepages_free}, {"size_kb", report.hugepage_size_kb}};
  j["gpu_mode"] = gpu_mode_name(report.gpu_mode);
  j["gpu_framework"] = report.gpu_framework();
  j["gpu_frameworks"] = report.gpu_frameworks();
  j["problems"] = nlohmann::json::array();
  j["hints"] = nlohmann::json::array();
  for (const auto &p : report.problems) {
    j["problems"].push_back(p.message);
    j["hints"].push_back(p.hint);
  }
  j["devices"] = nlohmann::json::array();
  for (const auto &fn : devices)
    j["devices"].push_back(device_json(fn));
  j["mdev_parents"] = nlohmann::json::array();
  for (const auto &parent : parents) {
    nlohmann::json profiles = nlohmann::json::array();
    for (const auto &t : parent.types)
      profiles.push_back({{"type", t.id},
                          {"name", t.name},
                          {"description", t.description.str()},
                          {"device_api", t.device_api},
                          {"framebuffer_mb", t.framebuffer_mb},
                          {"available", t.available}});
    j["mdev_parents"].push_back({{"parent", parent.name}, {"profiles", profiles}});
  }
  j["vendor_vfs"] = nlohmann::json::array();
  for (const auto &vf : vendor_vfs) {
    nlohmann::json creatable = nlohmann::json::array();
    for (const auto &t : vf.creatable)
      creatable.push_back({{"type", std::to_string(t.id)}, {"name", t.name}, {"framebuffer_mb", t.framebuffer_mb}});
    j["vendor_vfs"].push_back({{"vf", vf.address},
                               {"gpu", vf.gpu},
                               {"iommu_group", or_null(vf.iommu_group)},
                               {"current_type", vf.current_type},
                               {"creatable", creatable},
                               {"gpu_instance_id", or_null(vf.gpu_instance_id)},
                               {"placement_id", or_null(vf.placement_id)},
                               {"vgpu_params", or_null(vf.vgpu_params)}});
  }
  return j;
}

} // namespace hostdev::core

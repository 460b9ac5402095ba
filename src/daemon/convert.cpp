#include "daemon/convert.hpp"

#include "core/describe.hpp"
#include "daemon/snapshot.hpp"

namespace hostdev::daemon {

sdbus::Variant json_to_variant(const nlohmann::json &value) { return to_variant(wire_of(value)); }

VariantMap json_object_to_map(const nlohmann::json &object) { return to_variant_map(wire_map_of(object)); }

WireMap available_entry(const core::AvailableDevice &device) {
  auto out = wire_map_of(core::device_json(device.function));
  wire_set(out, "registered",
           {sdbus::ObjectPath(device.registered_id.empty() ? std::string("/") : device_path(device.registered_id))});
  return out;
}

VariantMap resources_map(const core::GpuResources &resources) {
  VariantMap out;
  out.emplace("mode", sdbus::Variant(std::string(core::gpu_mode_name(resources.mode))));
  out.emplace("total_slots", sdbus::Variant(static_cast<std::uint32_t>(resources.total_slots)));
  out.emplace("used_slots", sdbus::Variant(static_cast<std::uint32_t>(resources.used_slots)));
  out.emplace("quarantined_slots", sdbus::Variant(static_cast<std::uint32_t>(resources.quarantined_slots)));
  out.emplace("frameworks", sdbus::Variant(resources.frameworks));
  std::vector<VariantMap> profiles;
  for (const auto &p : resources.profiles)
    profiles.push_back({{"name", sdbus::Variant(p.name)},
                        {"type", sdbus::Variant(p.type_id)},
                        {"framebuffer_mb", sdbus::Variant(static_cast<std::uint32_t>(p.framebuffer_mb))},
                        {"available", sdbus::Variant(static_cast<std::uint32_t>(p.available))},
                        {"framework", sdbus::Variant(p.framework)},
                        {"quarantined", sdbus::Variant(static_cast<std::uint32_t>(p.quarantined))}});
  out.emplace("profiles", sdbus::Variant(profiles));
  std::vector<VariantMap> devices;
  for (const auto &d : resources.devices)
    devices.push_back({{"name", sdbus::Variant(d.name)},
                       {"pci_address", sdbus::Variant(d.pci_address)},
                       {"available", sdbus::Variant(d.available)}});
  out.emplace("devices", sdbus::Variant(devices));
  std::vector<VariantMap> gpus;
  for (const auto &g : resources.gpus)
    gpus.push_back({{"pci_address", sdbus::Variant(g.pci_address)},
                    {"name", sdbus::Variant(g.name)},
                    {"framework", sdbus::Variant(g.framework)},
                    {"total_slots", sdbus::Variant(static_cast<std::uint32_t>(g.total_slots))},
                    {"used_slots", sdbus::Variant(static_cast<std::uint32_t>(g.used_slots))},
                    {"quarantined_slots", sdbus::Variant(static_cast<std::uint32_t>(g.quarantined_slots))},
                    {"framebuffer_used_mb", sdbus::Variant(static_cast<std::uint32_t>(g.framebuffer_used_mb))}});
  out.emplace("gpus", sdbus::Variant(gpus));
  return out;
}

VariantMap report_map(const core::HostReport &report) {
  VariantMap out;
  out.emplace("iommu_enabled", sdbus::Variant(report.iommu_enabled));
  out.emplace("vfio_available", sdbus::Variant(report.vfio_available()));
  out.emplace("vfio_pci_available", sdbus::Variant(report.vfio_pci_available));
  out.emplace("vfio_iommu_type1_loaded", sdbus::Variant(report.vfio_iommu_type1_loaded));
  out.emplace("gpu_mode", sdbus::Variant(std::string(core::gpu_mode_name(report.gpu_mode))));
  out.emplace("gpu_count", sdbus::Variant(static_cast<std::uint32_t>(report.gpu_count)));
  out.emplace("mdev_parent_count", sdbus::Variant(static_cast<std::uint32_t>(report.mdev_parent_count)));
  out.emplace("vendor_vf_count", sdbus::Variant(static_cast<std::uint32_t>(report.vendor_vf_count)));
  out.emplace("gpu_framework", sdbus::Variant(report.gpu_framework()));
  out.emplace("gpu_frameworks", sdbus::Variant(report.gpu_frameworks()));
  out.emplace("hugepages_total", sdbus::Variant(static_cast<std::uint64_t>(report.hugepages_total)));
  out.emplace("hugepages_free", sdbus::Variant(static_cast<std::uint64_t>(report.hugepages_free)));
  out.emplace("hugepage_size_kb", sdbus::Variant(static_cast<std::uint64_t>(report.hugepage_size_kb)));
  std::vector<std::string> problems, hints;
  for (const auto &p : report.problems) {
    problems.push_back(p.message);
    hints.push_back(p.hint);
  }
  out.emplace("problems", sdbus::Variant(problems));
  out.emplace("hints", sdbus::Variant(hints));
  return out;
}

VariantMap stats_map(const core::ReconcileStats &stats) {
  VariantMap out;
  out.emplace("destroyed", sdbus::Variant(static_cast<std::uint32_t>(stats.destroyed)));
  out.emplace("skipped_not_ours", sdbus::Variant(static_cast<std::uint32_t>(stats.skipped_not_ours)));
  out.emplace("skipped_in_use", sdbus::Variant(static_cast<std::uint32_t>(stats.skipped_in_use)));
  out.emplace("cleared_attachments", sdbus::Variant(static_cast<std::uint32_t>(stats.cleared_attachments)));
  out.emplace("errors", sdbus::Variant(stats.errors));
  return out;
}

} // namespace hostdev::daemon

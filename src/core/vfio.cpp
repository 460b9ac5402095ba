#include "core/vfio.hpp"

#include "core/error.hpp"
#include "core/host_names.hpp"
#include "core/validate.hpp"

#include <algorithm>
#include <cctype>
#include <cstring>

namespace hostdev::core {
namespace {

bool all_digits(const std::string &s) {
  return !s.empty() &&
         std::all_of(s.begin(), s.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
}

bool matches(const std::string &target, const std::vector<std::string> &paths) {
  for (const auto &p : paths) {
    if (!p.empty() && p.back() == '*') {
      if (target.compare(0, p.size() - 1, p, 0, p.size() - 1) == 0)
        return true;
    } else if (target == p) {
      return true;
    }
  }
  return false;
}

constexpr const char *kOverrideClear = "\n";
constexpr const char *kDriversProbe = "sys/bus/pci/drivers_probe";

std::string driver_unbind_path(const std::string &driver) {
  validate_component(driver, "driver");
  return "sys/bus/pci/drivers/" + driver + "/unbind";
}

} // namespace

std::vector<Holder> find_holders(const Sysfs &sysfs, const std::vector<std::string> &paths) {
  std::vector<Holder> out;
  if (paths.empty())
    return out;
  for (const auto &pid : sysfs.list("proc")) {
    if (!all_digits(pid))
      continue;
    const std::string fd_dir = "proc/" + pid + "/fd";
    const auto fds = sysfs.list_checked(fd_dir);
    if (!fds) {
      Holder h;
      h.pid = std::stoi(pid);
      h.command = sysfs.read_trimmed("proc/" + pid + "/comm").value_or("?");
      h.path = std::string("(unreadable: ") + std::strerror(errno) + ")";
      out.push_back(std::move(h));
      continue;
    }
    for (const auto &fd : *fds) {
      auto target = sysfs.readlink(fd_dir + "/" + fd);
      if (!target || !matches(*target, paths))
        continue;
      Holder h;
      h.pid = std::stoi(pid);
      h.command = sysfs.read_trimmed("proc/" + pid + "/comm").value_or("?");
      h.path = *target;
      out.push_back(std::move(h));
      break; // one line per process is enough
    }
  }
  return out;
}

std::vector<std::string> vfio_device_nodes(const Sysfs &sysfs, const std::string &device_dir,
                                           std::optional<int> group) {
  std::vector<std::string> nodes;
  if (group)
    nodes.push_back("/dev/vfio/" + std::to_string(*group));
  for (const auto &cdev : sysfs.list(device_dir + "/vfio-dev"))
    if (is_safe_component(cdev))
      nodes.push_back("/dev/vfio/devices/" + cdev);
  return nodes;
}

std::string describe_holders(const std::vector<Holder> &holders) {
  std::string out;
  for (const auto &h : holders) {
    if (!out.empty())
      out += ", ";
    out += std::to_string(h.pid) + " (" + h.command + ") holding " + h.path;
  }
  return out;
}

bool Vfio::vfio_pci_available() const { return sysfs_.is_dir(std::string("sys/bus/pci/drivers/") + kVfioPciDriver); }

GroupCheck Vfio::check_group(const std::string &address, const std::vector<std::string> &companions) const {
  GroupCheck check;
  const auto addr = normalize_pci_address(address);
  check.group = bus_.iommu_group_of(addr);
  if (!check.group)
    return check;
  check.members = bus_.iommu_group_members(*check.group);
  for (const auto &member : check.members) {
    if (member == addr || std::find(companions.begin(), companions.end(), member) != companions.end())
      continue;
    auto fn = bus_.find(member);
    if (!fn || fn->is_bridge() || fn->on_vfio() || !fn->driver)
      continue;
    check.blockers.push_back(member + " (" + *fn->driver + ")");
  }
  return check;
}

std::vector<Holder> Vfio::holders_of(const std::string &address) const {
  auto paths = vfio_device_nodes(sysfs_, pci_device_path(address), bus_.iommu_group_of(address));
  auto fn = bus_.find(address);
  if (fn && fn->is_nvidia())
    paths.emplace_back("/dev/nvidia*");
  return find_holders(sysfs_, paths);
}

void Vfio::write(const std::string &path, const std::string &value) const { sysfs_.write(path, value, deadline_); }

std::optional<std::string> Vfio::bind(const std::string &address, const std::vector<std::string> &companions) const {
  const auto addr = normalize_pci_address(address);
  auto fn = bus_.find(addr);
  if (!fn)
    fail(Errc::DeviceNotFound, "no PCI device " + addr + " on this host");
  // A VF of the vendor's VFIO framework is a VFIO device on its own driver already; vfio-pci cannot take it
  // (the driver refuses with EINVAL) and trying would tear the vGPU host driver off it.
  if (sysfs_.exists(pci_device_path(addr) + "/nvidia/current_vgpu_type"))
    fail(Errc::InvalidArgument, addr + " is a vGPU VF of the vendor's VFIO framework: it stays on its driver");
  if (!fn->iommu_group)
    fail(Errc::IommuUnavailable, addr + " has no IOMMU group: enable the IOMMU (intel_iommu=on or amd_iommu=on) "
                                        "before passing devices through");
  if (!vfio_pci_available())
    fail(Errc::VfioUnavailable, "the vfio-pci driver is not loaded: run 'modprobe vfio-pci'");
  if (fn->on_vfio())
    fail(Errc::AlreadyBound, addr + " is already bound to vfio-pci");
  auto group = check_group(addr, companions);
  if (!group.blockers.empty()) {
    std::string list;
    for (const auto &b : group.blockers)
      list += (list.empty() ? "" : ", ") + b;
    fail(Errc::IommuGroupConflict, "IOMMU group " + std::to_string(*group.group) + " of " + addr +
                                       " also holds devices still used by host drivers: " + list +
                                       "; pass them to the same instance, or release them from their drivers first");
  }

  const std::string dev = pci_device_path(addr);
  const auto previous = fn->driver;
  bool restart_persistenced = false;
  auto restart = [&] {
    if (restart_persistenced) {
      try {
        units_->start(kPersistencedUnit);
      } catch (const std::exception &) {
        // The bind result matters more; the daemon logs unit failures itself.
      }
    }
  };

  try {
    try {
      if (fn->is_nvidia() && units_ != nullptr && units_->is_active(kPersistencedUnit)) {
        restart_persistenced = true; // from here on it is started again, whatever happens
        units_->stop(kPersistencedUnit);
      }
    } catch (const Error &) {
      throw;
    } catch (const std::exception &e) {
      fail(Errc::KernelError, std::string("cannot stop ") + kPersistencedUnit + ": " + e.what());
    }
    write(dev + "/driver_override", kVfioPciDriver);
    if (previous)
      write(driver_unbind_path(*previous), addr);
    write(kDriversProbe, addr);
    auto now = bus_.driver_of(addr);
    if (now != std::string(kVfioPciDriver))
      fail(Errc::KernelError, addr + " did not bind to vfio-pci (driver now: " + now.value_or("none") +
                                  "); see the kernel log (journalctl -k)");
  } catch (const Error &e) {
    std::string message = e.what();
    auto holders = holders_of(addr);
    if (!holders.empty())
      message += "; held open by " + describe_holders(holders);
    if (e.code() != Errc::Timeout) {
      // Undo what we did: no override, back to whatever driver the kernel picks.
      try {
        write(dev + "/driver_override", kOverrideClear);
        if (bus_.driver_of(addr) == std::string(kVfioPciDriver))
          write(driver_unbind_path(kVfioPciDriver), addr);
        if (!bus_.driver_of(addr))
          write(kDriversProbe, addr);
      } catch (const Error &) {
        message += " (and putting it back failed too: the device needs a Restore)";
      }
    }
    restart();
    throw Error(e.code(), message);
  }
  restart();
  return previous;
}

std::optional<std::string> Vfio::unbind(const std::string &address,
                                        const std::optional<std::string> &expected_driver) const {
  const auto addr = normalize_pci_address(address);
  auto fn = bus_.find(addr);
  if (!fn)
    fail(Errc::DeviceNotFound, "no PCI device " + addr + " on this host");
  if (!fn->on_vfio())
    fail(Errc::NotBound, addr + " is not bound to vfio-pci (driver: " + fn->driver.value_or("none") + ")");
  if (auto holders = holders_of(addr); !holders.empty())
    fail(Errc::InUse, addr + " is in use: " + describe_holders(holders));

  const std::string dev = pci_device_path(addr);
  write(dev + "/driver_override", kOverrideClear);
  write(driver_unbind_path(kVfioPciDriver), addr);
  write(kDriversProbe, addr);
  auto now = bus_.driver_of(addr);
  if (expected_driver && now != expected_driver)
    fail(Errc::KernelError, addr + " was released from vfio-pci but its host driver " + *expected_driver +
                                " did not take it back (driver now: " + now.value_or("none") +
                                "); the kernel log may say why, and a Restore re-probes it");
  return now;
}

std::optional<std::string> Vfio::restore(const std::string &address) const {
  const auto addr = normalize_pci_address(address);
  auto fn = bus_.find(addr);
  if (!fn)
    fail(Errc::DeviceNotFound, "no PCI device " + addr + " on this host");
  if (fn->on_vfio())
    if (auto holders = holders_of(addr); !holders.empty())
      fail(Errc::InUse, addr + " is in use: " + describe_holders(holders));

  const std::string dev = pci_device_path(addr);
  if (fn->driver_override)
    write(dev + "/driver_override", kOverrideClear);
  if (fn->on_vfio())
    write(driver_unbind_path(kVfioPciDriver), addr);
  if (!bus_.driver_of(addr))
    write(kDriversProbe, addr);
  if (fn->is_nvidia() && units_ != nullptr && units_->exists(kPersistencedUnit) &&
      !units_->is_active(kPersistencedUnit))
    units_->start(kPersistencedUnit);
  return bus_.driver_of(addr);
}

} // namespace hostdev::core

#include "core/vendor_vgpu.hpp"

#include "core/error.hpp"
#include "core/validate.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <limits>

namespace hostdev::core {
namespace {

constexpr std::size_t kMaxName = 128; // the driver's names are short; anything longer is cut

std::string vf_file(const std::string &address, const char *name) {
  return pci_device_path(address) + "/nvidia/" + name;
}

std::string trim(std::string_view s) {
  auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos)
    return {};
  auto e = s.find_last_not_of(" \t\r\n");
  return std::string(s.substr(b, e - b + 1));
}

std::optional<std::uint32_t> parse_u32(std::string_view s) {
  if (s.empty() || s.size() > 10)
    return std::nullopt;
  std::uint64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || v > std::numeric_limits<std::uint32_t>::max())
    return std::nullopt;
  return static_cast<std::uint32_t>(v);
}

bool is_vendor_word(std::string_view w) { return w == "NVIDIA" || w == "GRID"; }

} // namespace

std::vector<VgpuType> parse_creatable_vgpu_types(const std::string &text) {
  std::vector<VgpuType> out;
  std::size_t pos = 0;
  while (pos <= text.size()) {
    auto nl = text.find('\n', pos);
    std::string_view line(text.data() + pos, (nl == std::string::npos ? text.size() : nl) - pos);
    pos = nl == std::string::npos ? text.size() + 1 : nl + 1;
    auto colon = line.find(':');
    if (colon == std::string_view::npos)
      continue;
    auto id = parse_u32(trim(line.substr(0, colon)));
    if (!id || *id == 0) // the header "ID    : vGPU Name" and anything else that is no id
      continue;
    auto name = single_line(trim(line.substr(colon + 1)));
    if (name.empty())
      continue;
    if (name.size() > kMaxName)
      name = to_valid_utf8(name.substr(0, kMaxName));
    if (std::any_of(out.begin(), out.end(), [&](const VgpuType &t) { return t.id == *id; }))
      continue;
    out.push_back(VgpuType{*id, name, framebuffer_from_profile_name(name)});
  }
  return out;
}

unsigned framebuffer_from_profile_name(const std::string &name) {
  // The last "-" segment is <digits><series letters>: "4Q", "18C", "0B"; a MIG profile has a slice count
  // before it ("1-18C"), which the last segment already skips.
  const auto short_name = short_profile_name(name);
  auto dash = short_name.rfind('-');
  if (dash == std::string::npos || dash + 1 >= short_name.size())
    return 0;
  std::string_view seg(short_name.data() + dash + 1, short_name.size() - dash - 1);
  std::size_t digits = 0;
  while (digits < seg.size() && std::isdigit(static_cast<unsigned char>(seg[digits])))
    ++digits;
  if (digits == 0 || digits == seg.size() || digits > 4)
    return 0;
  if (!std::all_of(seg.begin() + static_cast<long>(digits), seg.end(),
                   [](char c) { return std::isupper(static_cast<unsigned char>(c)); }))
    return 0;
  unsigned gb = 0;
  std::from_chars(seg.data(), seg.data() + digits, gb);
  return gb == 0 ? 512 : gb * 1024;
}

std::string short_profile_name(const std::string &name) {
  auto space = name.find(' ');
  if (space != std::string::npos && is_vendor_word(std::string_view(name).substr(0, space)))
    return trim(std::string_view(name).substr(space + 1));
  return name;
}

bool profile_matches(const std::string &ref, const std::string &name, const std::string &type_id) {
  if (ref.empty())
    return false;
  if (ref == name || ref == type_id || ref == short_profile_name(name))
    return true;
  // A bare number names NVIDIA's type on either framework: "1147" is "nvidia-1147" of an mdev parent too.
  return parse_u32(ref) && type_id == "nvidia-" + ref;
}

bool VendorVgpu::is_vendor_vf(const std::string &address) const {
  return sysfs_.exists(vf_file(address, "current_vgpu_type"));
}

std::uint32_t VendorVgpu::current_type(const std::string &address) const {
  auto text = sysfs_.read_trimmed(vf_file(address, "current_vgpu_type"));
  return text ? parse_u32(*text).value_or(0) : 0;
}

std::optional<VendorVf> VendorVgpu::find(const std::string &address) const {
  auto dir = sysfs_.open_dir(pci_device_path(address) + "/nvidia");
  if (!dir)
    return std::nullopt;
  auto current = dir->read_trimmed("current_vgpu_type");
  if (!current)
    return std::nullopt;
  VendorVf vf;
  vf.address = address;
  vf.current_type = parse_u32(*current).value_or(0);
  vf.creatable = parse_creatable_vgpu_types(dir->read_trimmed("creatable_vgpu_types").value_or(""));
  auto optional_line = [&](const char *name) -> std::optional<std::string> {
    auto v = dir->read_trimmed(name);
    if (!v)
      return std::nullopt;
    auto line = single_line(*v);
    return line.size() > 256 ? to_valid_utf8(line.substr(0, 256)) : line;
  };
  vf.gpu_instance_id = optional_line("gpu_instance_id");
  vf.placement_id = optional_line("placement_id");
  vf.vgpu_params = optional_line("vgpu_params");
  auto pf = sysfs_.link_name(pci_device_path(address) + "/physfn");
  vf.gpu = pf && is_pci_address(*pf) ? *pf : address;
  if (auto group = sysfs_.link_name(pci_device_path(address) + "/iommu_group"))
    if (auto n = parse_u32(*group); n && *n <= static_cast<std::uint32_t>(std::numeric_limits<int>::max()))
      vf.iommu_group = static_cast<int>(*n);
  return vf;
}

std::vector<VendorVf> VendorVgpu::list(const std::vector<PciFunction> &functions) const {
  std::vector<VendorVf> out;
  for (const auto &fn : functions) {
    // Only VFs carry the files; a PF is never asked (saves a failed open per function on big hosts).
    if (!fn.physfn)
      continue;
    if (auto vf = find(fn.address)) {
      vf->gpu = *fn.physfn;
      vf->iommu_group = fn.iommu_group;
      out.push_back(std::move(*vf));
    }
  }
  return out;
}

void VendorVgpu::assign(const std::string &address, std::uint32_t type_id, std::chrono::milliseconds deadline) const {
  if (type_id == 0)
    fail(Errc::InvalidArgument, "vGPU type 0 is no type");
  if (!is_vendor_vf(address))
    fail(Errc::DeviceNotFound, address + " has no vendor vGPU files (nvidia/current_vgpu_type)");
  if (auto current = current_type(address); current != 0)
    fail(Errc::AlreadyExists, address + " has vGPU type " + std::to_string(current) + " already");
  sysfs_.write(vf_file(address, "current_vgpu_type"), std::to_string(type_id), deadline);
  if (auto now = current_type(address); now != type_id)
    fail(Errc::KernelError, "the driver accepted vGPU type " + std::to_string(type_id) + " on " + address +
                                " but current_vgpu_type reads " + std::to_string(now));
}

void VendorVgpu::release(const std::string &address, std::chrono::milliseconds deadline) const {
  const auto until = std::chrono::steady_clock::now() + deadline;
  std::string last;
  for (;;) {
    if (current_type(address) == 0)
      return;
    try {
      sysfs_.write(vf_file(address, "current_vgpu_type"), "0", deadline);
    } catch (const Error &e) {
      if (e.code() != Errc::KernelError || (e.sys_errno() != EBUSY && e.sys_errno() != EPERM))
        throw;
      last = e.what();
    }
    if (current_type(address) == 0)
      return;
    if (std::chrono::steady_clock::now() >= until)
      fail(Errc::InUse, "the driver still refuses to release the vGPU on " + address + " after " +
                            std::to_string(deadline.count()) + " ms" + (last.empty() ? "" : ": " + last));
    Sysfs::pause(std::chrono::milliseconds(100));
  }
}

} // namespace hostdev::core

// Validation of everything a caller hands in before it can become part of a path.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace hostdev::core {

// "0000:a2:00.0" — domain:bus:device.function, hex, function 0-7. Returns the lower-case form.
// Throws Error(InvalidPciAddress).
std::string normalize_pci_address(std::string_view text);
bool is_pci_address(std::string_view text) noexcept;

// ^[a-zA-Z0-9][a-zA-Z0-9_.-]+$, at most 64 characters, and not 32 hex digits (the form of an object id).
// Throws Error(InvalidName).
void validate_name(std::string_view name, std::string_view what = "name");
bool is_valid_name(std::string_view name) noexcept;

// An instance's free-text image: at most 4096 bytes, no control characters. Throws Error(InvalidArgument).
inline constexpr std::size_t kMaxImageLength = 4096;
void validate_image(std::string_view image);
// A vGPU profile as a caller or the store names it: at most 255 bytes, no control characters, no '/'.
inline constexpr std::size_t kMaxProfileLength = 255;
void validate_profile(std::string_view profile);

// `bytes` as a string D-Bus accepts: valid UTF-8 without NUL or noncharacters. Each NUL, each byte of a
// noncharacter and each byte that is not part of a well-formed sequence becomes the text "\xNN". For every
// string read from the kernel (sysfs attributes, link names, hwdb): D-Bus and JSON take UTF-8 only, and one
// bad string must not break a reply for everyone.
std::string to_valid_utf8(std::string_view bytes);
// One line: newlines, carriage returns and tabs become spaces.
std::string single_line(std::string text);
// The items with `sep` between them: "a, b, c".
std::string join(const std::vector<std::string> &items, std::string_view sep = ", ");

// "pci-0000-a2-00-0" for "0000:a2:00.0".
std::string default_device_name(std::string_view normalized_address);

// 8-4-4-4-12 hex. Returns the lower-case form. Throws Error(InvalidArgument).
std::string normalize_uuid(std::string_view text);
bool is_uuid(std::string_view text) noexcept;
// A UUID in the lower-case form normalize_uuid gives (the form hostdev stores and names files by).
bool is_normalized_uuid(std::string_view text) noexcept;

// 32 lower-case hex characters (the random ids of devices and instances).
bool is_object_id(std::string_view text) noexcept;

// One path component from sysfs or the caller (an mdev type id, a driver name, a parent device name):
// non-empty, no '/', not "." or "..", no NUL, at most 255 bytes, printable ASCII. Throws Error(InvalidArgument).
void validate_component(std::string_view component, std::string_view what);
bool is_safe_component(std::string_view component) noexcept;

// A memory size as a person writes it: "2048" (MiB, as QEMU's -m), "512M", "8G", "1T", "65536K" (binary units,
// either case). nullopt when malformed, 0, or over 1 PiB.
std::optional<std::uint64_t> parse_memory_size(std::string_view text) noexcept;

} // namespace hostdev::core

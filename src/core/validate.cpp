#include "core/validate.hpp"

#include "core/error.hpp"
#include "core/lookup.hpp"

#include <algorithm>
#include <cctype>

namespace hostdev::core {
namespace {

bool is_hex(char c) noexcept { return std::isxdigit(static_cast<unsigned char>(c)) != 0; }

std::string lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::string printable(std::string_view text) {
  std::string out;
  for (char c : text.substr(0, 80)) {
    auto u = static_cast<unsigned char>(c);
    out += (u >= 0x20 && u < 0x7f) ? c : '?';
  }
  if (text.size() > 80)
    out += "...";
  return out;
}

} // namespace

bool is_pci_address(std::string_view t) noexcept {
  // dddd:bb:dd.f
  if (t.size() != 12)
    return false;
  for (std::size_t i : {0u, 1u, 2u, 3u, 5u, 6u, 8u, 9u})
    if (!is_hex(t[i]))
      return false;
  return t[4] == ':' && t[7] == ':' && t[10] == '.' && t[11] >= '0' && t[11] <= '7';
}

std::string normalize_pci_address(std::string_view text) {
  if (!is_pci_address(text))
    fail(Errc::InvalidPciAddress,
         "'" + printable(text) + "' is not a PCI address; expected domain:bus:device.function such as 0000:a2:00.0");
  return lower(text);
}

bool is_valid_name(std::string_view name) noexcept {
  if (name.size() < 2 || name.size() > 64)
    return false;
  auto ok = [](char c, bool first) {
    if (std::isalnum(static_cast<unsigned char>(c)) && static_cast<unsigned char>(c) < 0x80)
      return true;
    return !first && (c == '_' || c == '.' || c == '-');
  };
  if (!ok(name[0], true))
    return false;
  if (!std::all_of(name.begin() + 1, name.end(), [&](char c) { return ok(c, false); }))
    return false;
  // Not spelled like an object id (32 hex digits): lookups try ids first, so such a name would shadow another
  // object or be shadowed by it.
  return !(name.size() == 32 && std::all_of(name.begin(), name.end(), is_hex));
}

void validate_name(std::string_view name, std::string_view what) {
  if (!is_valid_name(name))
    fail(Errc::InvalidName, std::string(what) + " '" + printable(name) +
                                "' is not valid: use 2-64 characters, letters, digits, '_', '.', '-', "
                                "starting with a letter or digit (and not 32 hex digits, the form of an id)");
}

std::string default_device_name(std::string_view a) {
  std::string out = "pci-";
  for (char c : a)
    out += (c == ':' || c == '.') ? '-' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool is_uuid(std::string_view t) noexcept {
  if (t.size() != 36)
    return false;
  for (std::size_t i = 0; i < t.size(); ++i) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (t[i] != '-')
        return false;
    } else if (!is_hex(t[i])) {
      return false;
    }
  }
  return true;
}

bool is_normalized_uuid(std::string_view t) noexcept {
  return is_uuid(t) && std::none_of(t.begin(), t.end(), [](char c) { return c >= 'A' && c <= 'Z'; });
}

std::string normalize_uuid(std::string_view text) {
  if (!is_uuid(text))
    fail(Errc::InvalidArgument, "'" + printable(text) + "' is not a UUID (8-4-4-4-12 hex digits)");
  return lower(text);
}

bool is_object_id(std::string_view t) noexcept {
  return t.size() == 32 &&
         std::all_of(t.begin(), t.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

bool is_safe_component(std::string_view c) noexcept {
  if (c.empty() || c.size() > 255 || c == "." || c == "..")
    return false;
  return std::all_of(c.begin(), c.end(), [](char ch) {
    auto u = static_cast<unsigned char>(ch);
    return u > 0x20 && u < 0x7f && ch != '/';
  });
}

void validate_component(std::string_view component, std::string_view what) {
  if (!is_safe_component(component))
    fail(Errc::InvalidArgument, std::string(what) + " '" + printable(component) + "' is not a valid name");
}

std::string join(const std::vector<std::string> &items, std::string_view sep) {
  std::string out;
  for (const auto &item : items) {
    if (!out.empty())
      out += sep;
    out += item;
  }
  return out;
}

std::string single_line(std::string text) {
  std::replace_if(
      text.begin(), text.end(), [](char c) { return c == '\n' || c == '\r' || c == '\t'; }, ' ');
  return text;
}

std::string to_valid_utf8(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(in[i]); };
  const auto cont = [&](std::size_t i) { return i < in.size() && (byte(i) & 0xC0) == 0x80; };
  for (std::size_t i = 0; i < in.size();) {
    const unsigned char c = byte(i);
    std::size_t len = 0;
    if (c < 0x80)
      len = 1;
    else if (c >= 0xC2 && c <= 0xDF && cont(i + 1))
      len = 2;
    else if (c >= 0xE0 && c <= 0xEF && cont(i + 1) && cont(i + 2)) {
      const unsigned char c1 = byte(i + 1);
      // no overlong forms (E0 80..9F), no UTF-16 surrogates (ED A0..BF)
      if (!(c == 0xE0 && c1 < 0xA0) && !(c == 0xED && c1 > 0x9F))
        len = 3;
    } else if (c >= 0xF0 && c <= 0xF4 && cont(i + 1) && cont(i + 2) && cont(i + 3)) {
      const unsigned char c1 = byte(i + 1);
      // no overlong forms (F0 80..8F), nothing above U+10FFFF (F4 90..)
      if (!(c == 0xF0 && c1 < 0x90) && !(c == 0xF4 && c1 > 0x8F))
        len = 4;
    }
    if (c == 0)
      len = 0; // D-Bus strings hold no NUL
    if (len >= 3) {
      // Nor noncharacters (U+FDD0..U+FDEF, U+xFFFE, U+xFFFF), which sd-bus refuses to send.
      char32_t cp = len == 3 ? (c & 0x0F) : (c & 0x07);
      for (std::size_t k = 1; k < len; ++k)
        cp = (cp << 6) | (byte(i + k) & 0x3F);
      if ((cp >= 0xFDD0 && cp <= 0xFDEF) || (cp & 0xFFFE) == 0xFFFE)
        len = 0;
    }
    if (len == 0) {
      static constexpr char hex[] = "0123456789abcdef";
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 0xF];
      ++i;
      continue;
    }
    out.append(in.substr(i, len));
    i += len;
  }
  return out;
}

void validate_image(std::string_view image) {
  if (image.size() > kMaxImageLength)
    fail(Errc::InvalidArgument, "image is longer than " + std::to_string(kMaxImageLength) + " characters");
  for (char c : image)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
      fail(Errc::InvalidArgument, "image contains control characters");
}

void validate_profile(std::string_view profile) {
  if (profile.size() > kMaxProfileLength)
    fail(Errc::InvalidArgument, "gpu_profile is longer than " + std::to_string(kMaxProfileLength) + " characters");
  for (char c : profile)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f || c == '/')
      fail(Errc::InvalidArgument, "gpu_profile contains characters no profile has");
}

void validate_ref(std::string_view ref, std::string_view what) {
  if (!is_object_id(ref) && !is_valid_name(ref))
    fail(Errc::InvalidName, "'" + printable(ref) + "' is neither a " + std::string(what) + " id nor a valid " +
                                std::string(what) + " name");
}

std::optional<std::uint64_t> parse_memory_size(std::string_view text) noexcept {
  std::uint64_t n = 0;
  std::size_t i = 0;
  for (; i < text.size() && i < 16 && text[i] >= '0' && text[i] <= '9'; ++i)
    n = n * 10 + static_cast<std::uint64_t>(text[i] - '0');
  if (i == 0 || n == 0)
    return std::nullopt;
  unsigned shift = 20;
  if (i + 1 == text.size()) {
    const char unit = text[i];
    if (unit == 'K' || unit == 'k')
      shift = 10;
    else if (unit == 'M' || unit == 'm')
      shift = 20;
    else if (unit == 'G' || unit == 'g')
      shift = 30;
    else if (unit == 'T' || unit == 't')
      shift = 40;
    else
      return std::nullopt;
  } else if (i != text.size()) {
    return std::nullopt;
  }
  if (n > (std::uint64_t{1} << (50 - shift)))
    return std::nullopt;
  return n << shift;
}

} // namespace hostdev::core

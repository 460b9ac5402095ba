// libFuzzer: what the kernel says of an mdev type: the framebuffer in a description, profile lookup by name.
#include "core/error.hpp"
#include "core/mdev.hpp"

#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <string>

using namespace hostdev::core;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
  const std::string in(reinterpret_cast<const char *>(data), size);
  const unsigned mb = parse_framebuffer_mb(in);
  // A size comes only from a framebuffer key (in any case).
  std::string lower = in;
  for (auto &c : lower)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (mb != 0 && lower.find("framebuffer") == std::string::npos)
    std::abort();
  // The input as a profile name among profiles whose names come from the same bytes.
  std::vector<ProfileSummary> profiles;
  for (std::size_t i = 0; i < in.size() && profiles.size() < 8; i += 7)
    profiles.push_back(ProfileSummary{in.substr(i, 7), "t" + std::to_string(i), mb, 1});
  try {
    const auto &p = resolve_profile(profiles, in.substr(0, 7));
    if (p.name != in.substr(0, 7) && p.type_id != in.substr(0, 7))
      std::abort();
  } catch (const Error &e) {
    if (e.code() != Errc::ProfileUnavailable)
      std::abort();
  }
  return 0;
}

// libFuzzer: a method's a{sv} options built from arbitrary bytes, through the daemon's parser and on into the
// core's validation of what Create would receive.
#include "core/error.hpp"
#include "core/lookup.hpp"
#include "core/validate.hpp"
#include "daemon/options.hpp"

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

using hostdev::daemon::Options;
using hostdev::daemon::OptionSpec;

namespace {

// Reads the bytes as: [type byte][key length][key][value length][value]... for at most 8 entries.
Options::Map build(const std::uint8_t *data, std::size_t size) {
  Options::Map map;
  std::size_t i = 0;
  auto take = [&](std::size_t n) {
    std::string out;
    while (n-- > 0 && i < size)
      out += static_cast<char>(data[i++]);
    return out;
  };
  for (int n = 0; n < 8 && i + 2 < size; ++n) {
    const std::uint8_t type = data[i++];
    const std::string key = hostdev::core::to_valid_utf8(take(data[i++] % 80));
    const std::string value = hostdev::core::to_valid_utf8(take(i < size ? data[i++] : 0));
    switch (type % 6) {
    case 0: map.insert_or_assign(key, sdbus::Variant(!value.empty())); break;
    case 1: map.insert_or_assign(key, sdbus::Variant(value)); break;
    case 2: {
      std::vector<std::string> items;
      for (std::size_t at = 0; at < value.size(); at += 5)
        items.push_back(hostdev::core::to_valid_utf8(value.substr(at, 5)));
      map.insert_or_assign(key, sdbus::Variant(items));
      break;
    }
    case 3: map.insert_or_assign(key, sdbus::Variant(static_cast<std::int32_t>(value.size()))); break;
    case 4: map.insert_or_assign(key, sdbus::Variant(static_cast<double>(value.size()))); break;
    default: map.insert_or_assign(key, sdbus::Variant(static_cast<std::uint64_t>(value.size())));
    }
  }
  return map;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
  const auto map = build(data, size);
  try {
    const auto opts = Options::parse(map, {{"devices", "as"}, {"gpu_profile", "s"}, {"image", "s"}}, "spec key");
    // What Create does next with them.
    (void)opts.interactive();
    for (const auto &ref : opts.get_strings("devices"))
      try {
        hostdev::core::validate_ref(ref, "device");
      } catch (const hostdev::core::Error &) {
      }
    hostdev::core::validate_image(opts.get_string("image"));
    hostdev::core::validate_profile(opts.get_string("gpu_profile"));
  } catch (const hostdev::core::Error &e) {
    if (e.code() != hostdev::core::Errc::InvalidArgument && e.code() != hostdev::core::Errc::InvalidName)
      std::abort();
    if (std::string(e.what()).size() > 400)
      std::abort(); // the echo of a key is bounded
  }
  return 0;
}

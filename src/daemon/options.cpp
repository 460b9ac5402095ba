#include "daemon/options.hpp"

#include "core/error.hpp"

#include <algorithm>

namespace hostdev::daemon {

Options Options::parse(const Map &in, const std::vector<OptionSpec> &allowed, const std::string &what) {
  Options out;
  for (const auto &[key, value] : in) {
    static const std::string kBool(1, 'b');
    const std::string *want = key == "interactive" ? &kBool : nullptr;
    for (const auto &spec : allowed)
      if (spec.key == key)
        want = &spec.signature;
    const std::string expected = want != nullptr ? *want : std::string();
    // What the caller sent is echoed within bounds (a key may be 64 KiB long).
    const std::string shown = key.size() > 64 ? key.substr(0, 64) + "..." : key;
    // (appends, not operator+ chains: GCC 12 -Wrestrict false positives under the sanitizers)
    std::string msg;
    if (expected.empty()) {
      msg.append("unknown ").append(what).append(" '").append(shown).append("' (known: interactive");
      for (const auto &spec : allowed)
        msg.append(", ").append(spec.key);
      msg.append(")");
      core::fail(core::Errc::InvalidArgument, msg);
    }
    const auto actual = value.peekValueType();
    if (actual != expected) {
      msg.append(what).append(" '").append(shown).append("' must be of type '").append(expected);
      msg.append("', not '").append(actual).append("'");
      core::fail(core::Errc::InvalidArgument, msg);
    }
    out.values_.emplace(key, value);
  }
  return out;
}

bool Options::get_bool(const std::string &key, bool fallback) const {
  auto it = values_.find(key);
  return it == values_.end() ? fallback : it->second.get<bool>();
}

std::string Options::get_string(const std::string &key, const std::string &fallback) const {
  auto it = values_.find(key);
  return it == values_.end() ? fallback : it->second.get<std::string>();
}

std::vector<std::string> Options::get_strings(const std::string &key) const {
  auto it = values_.find(key);
  return it == values_.end() ? std::vector<std::string>{} : it->second.get<std::vector<std::string>>();
}

} // namespace hostdev::daemon

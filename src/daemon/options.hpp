// The a{sv} options of every method: known keys with one D-Bus type each. "interactive" (b) is accepted
// everywhere; an unknown key or a value of another type is Error.InvalidArgument naming the key.
#pragma once

#include <sdbus-c++/Types.h>

#include <map>
#include <string>
#include <vector>

namespace hostdev::daemon {

struct OptionSpec {
  std::string key;
  std::string signature; // "b", "s", "as" ...
};

class Options {
public:
  using Map = std::map<std::string, sdbus::Variant>;

  // Throws core::Error(InvalidArgument) for an unknown key or a wrong type. `what` names the argument in
  // messages ("option", "spec key").
  static Options parse(const Map &in, const std::vector<OptionSpec> &allowed, const std::string &what = "option");

  bool interactive() const { return get_bool("interactive", false); }
  bool has(const std::string &key) const { return values_.count(key) != 0; }
  bool get_bool(const std::string &key, bool fallback) const;
  std::string get_string(const std::string &key, const std::string &fallback = "") const;
  std::vector<std::string> get_strings(const std::string &key) const;

private:
  Map values_;
};

} // namespace hostdev::daemon

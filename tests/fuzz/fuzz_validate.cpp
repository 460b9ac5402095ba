// libFuzzer: the validators every caller-supplied and kernel-supplied string goes through.
#include "core/error.hpp"
#include "core/lookup.hpp"
#include "core/validate.hpp"

#include <cstdint>
#include <cstdlib>
#include <string>

using namespace hostdev::core;

namespace {

bool is_valid_utf8(const std::string &s) { return to_valid_utf8(s) == s; }

template <class F> bool throws_error(F f) {
  try {
    f();
    return false;
  } catch (const Error &) {
    return true;
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
  const std::string in(reinterpret_cast<const char *>(data), size);

  // Escaping yields valid UTF-8, and valid UTF-8 is left alone.
  const auto utf8 = to_valid_utf8(in);
  if (!is_valid_utf8(utf8) || utf8.find('\0') != std::string::npos)
    std::abort(); // a string D-Bus takes: valid UTF-8, no NUL

  // An address that normalizes is valid, normalizing is idempotent and lower-case, and it makes a valid name.
  if (!throws_error([&] { normalize_pci_address(in); })) {
    const auto a = normalize_pci_address(in);
    if (!is_pci_address(a) || normalize_pci_address(a) != a || !is_valid_name(default_device_name(a)))
      std::abort();
  } else if (is_pci_address(in)) {
    std::abort();
  }
  if (!throws_error([&] { normalize_uuid(in); })) {
    const auto u = normalize_uuid(in);
    if (!is_uuid(u) || normalize_uuid(u) != u)
      std::abort();
  }
  // Names, components and references: the predicate and the throwing form agree, and nothing that passes can
  // climb out of a directory.
  if (is_valid_name(in) == throws_error([&] { validate_name(in); }))
    std::abort();
  if (is_valid_name(in) && (in.find('/') != std::string::npos || in == ".." || is_object_id(in)))
    std::abort();
  if (is_safe_component(in) == throws_error([&] { validate_component(in, "x"); }))
    std::abort();
  if (is_safe_component(in) && (in.find('/') != std::string::npos || in == "." || in == ".."))
    std::abort();
  if ((is_object_id(in) || is_valid_name(in)) == throws_error([&] { validate_ref(in, "x"); }))
    std::abort();
  // Messages that echo the input stay bounded.
  try {
    validate_ref(in, "x");
  } catch (const Error &e) {
    if (std::string(e.what()).size() > 300)
      std::abort();
  }
  (void)throws_error([&] { validate_image(in); });
  (void)throws_error([&] { validate_profile(in); });
  return 0;
}

// libFuzzer: the store's record loader (JSON, then shape, then content) on arbitrary bytes.
#include "core/records.hpp"

#include <cstdint>
#include <cstdlib>
#include <string>

using namespace hostdev::core;

namespace {

// A record that loads writes back to a document that loads again as the same record.
template <class Parse> void one(const RecordJson &j, Parse parse) {
  try {
    const auto r = parse(j);
    const auto again = parse(to_json(r));
    if (to_json(again) != to_json(r))
      std::abort();
  } catch (const BadRecord &) {
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
  RecordJson j;
  try {
    j = RecordJson::parse(data, data + size);
  } catch (const RecordJson::exception &) {
    return 0;
  }
  one(j, device_from_json);
  one(j, instance_from_json);
  one(j, mdev_from_json);
  one(j, intent_from_json);
  return 0;
}

#include "cli/table.hpp"

#include <algorithm>

namespace hostdev::cli {
namespace {

// Display width: count UTF-8 lead bytes only, so names like "Intel®" line up.
std::size_t width(const std::string &s) {
  return static_cast<std::size_t>(
      std::count_if(s.begin(), s.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xc0) != 0x80; }));
}

} // namespace

void Table::print(std::ostream &out) const {
  std::vector<std::size_t> widths(headers_.size(), 0);
  auto measure = [&](const std::vector<std::string> &row) {
    for (std::size_t i = 0; i < row.size() && i < widths.size(); ++i)
      widths[i] = std::max(widths[i], width(row[i]));
  };
  measure(headers_);
  for (const auto &row : rows_)
    measure(row);
  auto emit = [&](const std::vector<std::string> &row) {
    for (std::size_t i = 0; i < widths.size(); ++i) {
      const std::string cell = i < row.size() ? row[i] : "";
      out << cell;
      if (i + 1 < widths.size())
        out << std::string(widths[i] - width(cell) + 2, ' ');
    }
    out << '\n';
  };
  emit(headers_);
  for (const auto &row : rows_)
    emit(row);
}

} // namespace hostdev::cli

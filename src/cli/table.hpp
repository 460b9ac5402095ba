// Aligned text tables for a terminal.
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace hostdev::cli {

class Table {
public:
  explicit Table(std::vector<std::string> headers) : headers_(std::move(headers)) {}
  void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  bool empty() const noexcept { return rows_.empty(); }
  // Columns separated by two spaces; the last column is not padded.
  void print(std::ostream &out) const;

private:
  std::vector<std::string> headers_;
  std::vector<std::vector<std::string>> rows_;
};

} // namespace hostdev::cli

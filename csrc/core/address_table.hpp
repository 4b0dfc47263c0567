// Process-wide interning of address (and observe-name) strings to dense uint32 ids.
// Id 0 is reserved for "no name".
#pragma once

#include <cstdint>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace ppfast {

class AddressTable {
 public:
  static AddressTable& global();

  uint32_t intern(std::string_view s);
  std::string name(uint32_t id) const;
  std::string location(uint32_t id) const;
  void set_location(uint32_t id, std::string_view where);
  size_t size() const;
  /// Names of ids [from, size()): the "new addresses" a consumer has not seen yet.
  std::vector<std::string> names_from(uint32_t from) const;

 private:
  AddressTable();
  mutable std::shared_mutex mutex_;
  std::unordered_map<std::string, uint32_t> ids_;
  std::vector<std::string> names_;
  std::vector<std::string> locations_;
};

}  // namespace ppfast

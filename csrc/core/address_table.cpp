#include "core/address_table.hpp"

namespace ppfast {

AddressTable::AddressTable() {
  names_.emplace_back("");
  locations_.emplace_back("");
  ids_.emplace("", 0);
}

AddressTable& AddressTable::global() {
  static AddressTable* table = new AddressTable();  // never destroyed: used by detached threads
  return *table;
}

uint32_t AddressTable::intern(std::string_view s) {
  std::string key(s);
  {
    std::shared_lock<std::shared_mutex> lock(mutex_);
    auto it = ids_.find(key);
    if (it != ids_.end()) return it->second;
  }
  std::unique_lock<std::shared_mutex> lock(mutex_);
  auto [it, inserted] = ids_.emplace(key, static_cast<uint32_t>(names_.size()));
  if (inserted) {
    names_.push_back(key);
    locations_.emplace_back();
  }
  return it->second;
}

std::string AddressTable::name(uint32_t id) const {
  std::shared_lock<std::shared_mutex> lock(mutex_);
  return id < names_.size() ? names_[id] : std::string();
}

std::string AddressTable::location(uint32_t id) const {
  std::shared_lock<std::shared_mutex> lock(mutex_);
  return id < locations_.size() ? locations_[id] : std::string();
}

void AddressTable::set_location(uint32_t id, std::string_view where) {
  std::unique_lock<std::shared_mutex> lock(mutex_);
  if (id < locations_.size() && locations_[id].empty()) locations_[id] = std::string(where);
}

size_t AddressTable::size() const {
  std::shared_lock<std::shared_mutex> lock(mutex_);
  return names_.size();
}

std::vector<std::string> AddressTable::names_from(uint32_t from) const {
  std::shared_lock<std::shared_mutex> lock(mutex_);
  if (from >= names_.size()) return {};
  return {names_.begin() + from, names_.end()};
}

}  // namespace ppfast

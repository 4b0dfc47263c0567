// Zero-copy numpy views on a finished TraceBatch.  Each view's base is the Python
// batch object, which owns the C++ batch: the memory lives as long as any view.
#include "core/address_table.hpp"
#include "python/bindings.hpp"

namespace ppfast::python {
namespace {

template <class T>
py::array view(const std::vector<T>& v, py::handle owner) {
  py::array a(py::dtype::of<T>(), {v.size()}, {sizeof(T)}, v.data(), owner);
  // Batches are immutable once handed to Python.
  py::detail::array_proxy(a.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
  return a;
}

py::dict columns(py::object self) {
  const TraceBatch& b = *self.cast<PyTraceBatch&>().batch;
  py::dict records, traces, arenas;
  records["trace"] = view(b.rec_trace, self);
  records["address"] = view(b.rec_address, self);
  records["instance"] = view(b.rec_instance, self);
  records["name"] = view(b.rec_name, self);
  records["kind"] = view(b.rec_kind, self);
  records["flags"] = view(b.rec_flags, self);
  records["dist"] = view(b.rec_dist, self);
  records["value"] = view(b.rec_value, self);
  records["log_prob"] = view(b.rec_log_prob, self);
  records["value_offset"] = view(b.rec_value_offset, self);
  records["value_len"] = view(b.rec_value_len, self);
  records["param_offset"] = view(b.rec_param_offset, self);
  records["param_len"] = view(b.rec_param_len, self);
  traces["index"] = view(b.trace_index, self);
  traces["begin"] = view(b.trace_begin, self);
  traces["end"] = view(b.trace_end, self);
  traces["log_prior"] = view(b.log_prior, self);
  traces["log_likelihood"] = view(b.log_likelihood, self);
  traces["log_weight"] = view(b.log_weight, self);
  traces["result"] = view(b.result, self);
  traces["trace_type"] = view(b.trace_type, self);
  traces["status"] = view(b.status, self);
  traces["message"] = view(b.message, self);
  arenas["values"] = view(b.value_arena, self);
  arenas["params"] = view(b.param_arena, self);
  py::dict all;
  all["records"] = records;
  all["traces"] = traces;
  all["arenas"] = arenas;
  return all;
}

}  // namespace

void register_trace(py::module_& m) {
  py::class_<PyTraceBatch>(m, "TraceBatch")
      .def(py::init([] { return PyTraceBatch{BatchPool::global().acquire()}; }))
      .def_property_readonly("num_traces", [](const PyTraceBatch& b) { return b.batch->num_traces(); })
      .def_property_readonly("num_records", [](const PyTraceBatch& b) { return b.batch->num_records(); })
      .def_property_readonly("messages", [](const PyTraceBatch& b) { return b.batch->messages; })
      .def("columns", &columns)
      .def_static(
          "concat",
          [](const std::vector<PyTraceBatch*>& parts) {
            PyTraceBatch out{BatchPool::global().acquire()};
            std::vector<const TraceBatch*> natives;
            for (auto* p : parts) natives.push_back(p->batch.get());
            py::gil_scoped_release release;
            out.batch->append_all(natives);
            return out;
          },
          "Concatenates batches into a new one (one copy, sized once).");

  m.def("pooled_bytes", [] { return BatchPool::global().pooled_bytes(); },
        "Bytes held by the pool of spare trace batches (at most 512 MiB).");
  m.def("lazily_pooled_bytes", [] { return BatchPool::global().lazily_pooled_bytes(); },
        "Address space of the pool's larger spare batches, whose pages the kernel may take back.");
  m.def("intern", [](const std::string& s) { return AddressTable::global().intern(s); });
  m.def("address_name", [](uint32_t id) { return AddressTable::global().name(id); });
  m.def("address_location", [](uint32_t id) { return AddressTable::global().location(id); });
  m.def("set_address_location", [](uint32_t id, const std::string& where) {
    AddressTable::global().set_location(id, where);
  });
  m.def("address_names", [](uint32_t from) { return AddressTable::global().names_from(from); },
        py::arg("from_id") = 0, "Names of address ids from `from_id` on (index i is id from_id + i).");
}

}  // namespace ppfast::python

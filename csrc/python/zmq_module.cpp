// ppfast._zmq: the one binary of the package that links libzmq.  It hands ppfast._core the
// ZeroMQ functions its PPX client calls (csrc/transport/ppx/zmq_table.hpp), so that a
// missing or broken libzmq fails only here, at the first PPX use.
#include <Python.h>
#include <zmq.h>

#include "transport/ppx/zmq_table.hpp"

namespace {

const ppfast::ppx::ZmqTable kTable = {
    ppfast::ppx::kZmqTableVersion,
    &zmq_ctx_new, &zmq_ctx_set, &zmq_ctx_term, &zmq_socket, &zmq_close, &zmq_connect, &zmq_setsockopt,
    &zmq_send, &zmq_socket_monitor, &zmq_msg_init, &zmq_msg_close, &zmq_msg_data, &zmq_msg_size,
    &zmq_msg_more, &zmq_msg_recv, &zmq_errno, &zmq_strerror,
};

PyModuleDef kModule = {PyModuleDef_HEAD_INIT, "_zmq", "ZeroMQ for ppfast's PPX client (private).", -1,
                       nullptr, nullptr, nullptr, nullptr, nullptr};

}  // namespace

PyMODINIT_FUNC PyInit__zmq() {
  PyObject* m = PyModule_Create(&kModule);
  if (!m) return nullptr;
  int major = 0, minor = 0, patch = 0;
  zmq_version(&major, &minor, &patch);
  PyObject* capsule =
      PyCapsule_New(const_cast<ppfast::ppx::ZmqTable*>(&kTable), "ppfast._zmq.table", nullptr);
  if (!capsule || PyModule_AddObject(m, "table", capsule) != 0) {  // AddObject steals on success only
    Py_XDECREF(capsule);
    Py_DECREF(m);
    return nullptr;
  }
  PyObject* version = Py_BuildValue("(iii)", major, minor, patch);
  if (!version || PyModule_AddObject(m, "libzmq_version", version) != 0) {
    Py_XDECREF(version);
    Py_DECREF(m);
    return nullptr;
  }
  return m;
}

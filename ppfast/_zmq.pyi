"""ZeroMQ for ppfast's PPX client (private): see csrc/python/zmq_module.cpp."""

#: PyCapsule "ppfast._zmq.table": the ZeroMQ functions, for ppfast._core.ppx_bind_zmq.
table: object
#: (major, minor, patch) of the libzmq this module loaded.
libzmq_version: tuple[int, int, int]

# PPX over ZeroMQ, both ways (include()d after Ppx.cmake and PpfastExamples.cmake):
#   ppfast_ppx_client   STATIC: ppfast drives PPX simulators (linked into the extension
#                       _core, which must not need libzmq: its ZeroMQ calls are forwarded
#                       to the extension _zmq, loaded on the first PPX use)
#   _zmq                the Python extension that links libzmq
#   ppfast_ppx_server   STATIC, alias ppfast::ppx_server: a ppfast simulator serves PPX
#   <example>_ppx       one executable per example simulator, installed in
#                       ppfast/examples/bin: `<example>_ppx ipc://@name` serves it to
#                       PyProb's RemoteModel or ppfast.RemoteModel.
include_guard(GLOBAL)

add_library(ppfast_ppx_client STATIC csrc/transport/ppx/client.cpp csrc/transport/ppx/zmq_table.cpp)
target_link_libraries(ppfast_ppx_client PUBLIC ppfast_ppx ppfast_core)
target_include_directories(ppfast_ppx_client SYSTEM PUBLIC $<TARGET_PROPERTY:PkgConfig::ZMQ,INTERFACE_INCLUDE_DIRECTORIES>)
target_compile_options(ppfast_ppx_client PRIVATE ${PPFAST_WARNINGS})
set_target_properties(ppfast_ppx_client PROPERTIES POSITION_INDEPENDENT_CODE ON CXX_VISIBILITY_PRESET hidden)

add_library(ppfast_ppx_server STATIC csrc/transport/ppx/server.cpp)
add_library(ppfast::ppx_server ALIAS ppfast_ppx_server)
target_link_libraries(ppfast_ppx_server PUBLIC ppfast_core PRIVATE ppfast_ppx PkgConfig::ZMQ)
target_compile_options(ppfast_ppx_server PRIVATE ${PPFAST_WARNINGS})
set_target_properties(ppfast_ppx_server PROPERTIES POSITION_INDEPENDENT_CODE ON CXX_VISIBILITY_PRESET hidden
                      EXPORT_NAME ppx_server)
set_target_properties(ppfast_ppx PROPERTIES EXPORT_NAME ppx)  # exported with the package (PpfastPackage)

foreach(example ${PPFAST_EXAMPLES})
  add_executable(ppfast_example_${example}_ppx csrc/transport/ppx/server_main.cpp examples/cpp/${example}.cpp)
  target_link_libraries(ppfast_example_${example}_ppx PRIVATE ppfast_ppx_server)
  target_include_directories(ppfast_example_${example}_ppx PRIVATE csrc/transport/ppx)
  set_target_properties(ppfast_example_${example}_ppx PROPERTIES OUTPUT_NAME ${example}_ppx)
  install(TARGETS ppfast_example_${example}_ppx RUNTIME DESTINATION ppfast/examples/bin)
endforeach()

python_add_library(_zmq MODULE WITH_SOABI csrc/python/zmq_module.cpp)
target_include_directories(_zmq PRIVATE ${PROJECT_SOURCE_DIR}/csrc)
target_link_libraries(_zmq PRIVATE PkgConfig::ZMQ)
target_compile_options(_zmq PRIVATE ${PPFAST_WARNINGS})
install(TARGETS _zmq LIBRARY DESTINATION ppfast)

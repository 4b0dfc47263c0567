# Shared-memory mode (csrc/transport/shm):
#   ppfast_main (ppfast::main)  main() for simulator executables: serves a ppfast host over
#                               shared memory (--ppfast-shm) or runs the model standalone;
#                               link it with ppfast::ppfast into an executable whose source
#                               ends in PPFAST_MODEL(name, fn).
#   the host side, compiled into the Python extension _core.
add_library(ppfast_main STATIC
  ${PROJECT_SOURCE_DIR}/csrc/transport/shm/main.cpp
  ${PROJECT_SOURCE_DIR}/csrc/transport/shm/server.cpp)
add_library(ppfast::main ALIAS ppfast_main)
target_link_libraries(ppfast_main PUBLIC ppfast_core)
target_compile_options(ppfast_main PRIVATE ${PPFAST_WARNINGS})
set_target_properties(ppfast_main PROPERTIES EXPORT_NAME main)
install(TARGETS ppfast_main EXPORT ppfastTargets ARCHIVE DESTINATION ppfast/lib)

target_sources(_core PRIVATE
  ${PROJECT_SOURCE_DIR}/csrc/python/shm.cpp
  ${PROJECT_SOURCE_DIR}/csrc/transport/shm/host.cpp)
if(CMAKE_SYSTEM_NAME STREQUAL "Linux")
  target_link_libraries(_core PRIVATE rt)  # shm_open lives in librt before glibc 2.34
endif()

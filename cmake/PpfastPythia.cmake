# The Pythia 8.244 examples (pythia_z, pythia_tau), built when scripts/build_pythia.sh has
# built Pythia into its cache (PPFAST_PYTHIA_DIR, default: that cache).  Each example is
# compiled once (an object library, with frame pointers for cheap stack addresses) and
# linked into the embedded library, the shared-memory executable and the PPX server, so
# their call-stack addresses are the same in every mode.
file(STRINGS ${PROJECT_SOURCE_DIR}/cmake/pythia8/sdist.sha256 _pythia_sha LIMIT_COUNT 1)
string(SUBSTRING "${_pythia_sha}" 0 16 _pythia_key)
if(DEFINED ENV{PPFAST_CACHE})
  set(_pythia_cache "$ENV{PPFAST_CACHE}")
elseif(DEFINED ENV{XDG_CACHE_HOME})
  set(_pythia_cache "$ENV{XDG_CACHE_HOME}/ppfast")
else()
  set(_pythia_cache "$ENV{HOME}/.cache/ppfast")
endif()
set(PPFAST_PYTHIA_DIR "${_pythia_cache}/pythia8244/${_pythia_key}" CACHE PATH "Pythia 8.244 built by scripts/build_pythia.sh")
if(NOT EXISTS "${PPFAST_PYTHIA_DIR}/lib/libpythia8.a")
  message(STATUS "Pythia 8.244 not built (bash scripts/build_pythia.sh): Pythia examples skipped")
  return()
endif()
message(STATUS "Pythia 8.244: ${PPFAST_PYTHIA_DIR}")
add_library(pythia8 STATIC IMPORTED)
set_target_properties(pythia8 PROPERTIES IMPORTED_LOCATION "${PPFAST_PYTHIA_DIR}/lib/libpythia8.a"
                      INTERFACE_INCLUDE_DIRECTORIES "${PPFAST_PYTHIA_DIR}/include")
foreach(example pythia_z pythia_tau)
  add_library(ppfast_${example}_obj OBJECT examples/cpp/${example}.cpp)
  target_link_libraries(ppfast_${example}_obj PRIVATE ppfast::ppfast pythia8)
  target_compile_definitions(ppfast_${example}_obj PRIVATE
                             PPFAST_PYTHIA_XMLDIR="${PPFAST_PYTHIA_DIR}/share/Pythia8/xmldoc")
  target_compile_options(ppfast_${example}_obj PRIVATE -fno-omit-frame-pointer)
  set_target_properties(ppfast_${example}_obj PROPERTIES POSITION_INDEPENDENT_CODE ON CXX_VISIBILITY_PRESET hidden)

  add_library(ppfast_example_${example} MODULE $<TARGET_OBJECTS:ppfast_${example}_obj>)
  target_link_libraries(ppfast_example_${example} PRIVATE ppfast::ppfast pythia8)
  set_target_properties(ppfast_example_${example} PROPERTIES PREFIX "" OUTPUT_NAME ${example})
  install(TARGETS ppfast_example_${example} LIBRARY DESTINATION ppfast/examples/lib)

  add_executable(ppfast_example_${example}_bin $<TARGET_OBJECTS:ppfast_${example}_obj>)
  target_link_libraries(ppfast_example_${example}_bin PRIVATE ppfast::main ppfast::ppfast pythia8)
  set_target_properties(ppfast_example_${example}_bin PROPERTIES OUTPUT_NAME ${example}
                        RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/examples/bin)
  install(TARGETS ppfast_example_${example}_bin RUNTIME DESTINATION ppfast/examples/bin)

  add_executable(ppfast_example_${example}_ppx csrc/transport/ppx/server_main.cpp $<TARGET_OBJECTS:ppfast_${example}_obj>)
  target_link_libraries(ppfast_example_${example}_ppx PRIVATE ppfast_ppx_server pythia8)
  target_include_directories(ppfast_example_${example}_ppx PRIVATE csrc/transport/ppx)
  set_target_properties(ppfast_example_${example}_ppx PROPERTIES OUTPUT_NAME ${example}_ppx)
  install(TARGETS ppfast_example_${example}_ppx RUNTIME DESTINATION ppfast/examples/bin)
endforeach()

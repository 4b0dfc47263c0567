# Installs the public headers, the static core and a CMake package config into the
# Python package, so `cmake -Dppfast_DIR=$(python -m ppfast --cmake-dir)` finds it.
include(CMakePackageConfigHelpers)
set(PPFAST_CMAKE_DIR ppfast/cmake)
install(DIRECTORY csrc/include/ppfast DESTINATION ppfast/include)
install(TARGETS ppfast_core EXPORT ppfastTargets ARCHIVE DESTINATION ppfast/lib)
# PPX server for out-of-tree simulators: ppfast::ppx_server, <ppfast/ppx_server.hpp> (needs libzmq).
install(TARGETS ppfast_ppx ppfast_ppx_server EXPORT ppfastTargets ARCHIVE DESTINATION ppfast/lib)
install(FILES csrc/transport/ppx/server.hpp DESTINATION ppfast/include/ppfast RENAME ppx_server.hpp)
install(EXPORT ppfastTargets NAMESPACE ppfast:: DESTINATION ${PPFAST_CMAKE_DIR})
configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/ppfastConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/ppfastConfig.cmake INSTALL_DESTINATION ${PPFAST_CMAKE_DIR})
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/ppfastConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/ppfastConfig.cmake ${CMAKE_CURRENT_BINARY_DIR}/ppfastConfigVersion.cmake
  DESTINATION ${PPFAST_CMAKE_DIR})

# Installs the public headers, the static core and a CMake package config into the
# Python package, so `cmake -Dppfast_DIR=$(python -m ppfast --cmake-dir)` finds it.
include(CMakePackageConfigHelpers)
set(PPFAST_CMAKE_DIR ppfast/cmake)
install(DIRECTORY csrc/include/ppfast DESTINATION ppfast/include)
install(TARGETS ppfast_core EXPORT ppfastTargets ARCHIVE DESTINATION ppfast/lib)
install(EXPORT ppfastTargets NAMESPACE ppfast:: DESTINATION ${PPFAST_CMAKE_DIR})
configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/ppfastConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/ppfastConfig.cmake INSTALL_DESTINATION ${PPFAST_CMAKE_DIR})
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/ppfastConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/ppfastConfig.cmake ${CMAKE_CURRENT_BINARY_DIR}/ppfastConfigVersion.cmake
  DESTINATION ${PPFAST_CMAKE_DIR})

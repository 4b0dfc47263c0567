# Example simulators: each as a shared library for embedded mode.
set(PPFAST_EXAMPLES gum branching hundred tau_decay)
foreach(example ${PPFAST_EXAMPLES})
  add_library(ppfast_example_${example} MODULE examples/cpp/${example}.cpp)
  target_link_libraries(ppfast_example_${example} PRIVATE ppfast::ppfast)
  set_target_properties(ppfast_example_${example} PROPERTIES PREFIX "" OUTPUT_NAME ${example}
                        CXX_VISIBILITY_PRESET hidden)
  install(TARGETS ppfast_example_${example} LIBRARY DESTINATION ppfast/examples/lib)
  # The same source as an executable: shared-memory mode, or standalone (ppfast::main).
  add_executable(ppfast_example_${example}_bin examples/cpp/${example}.cpp)
  target_link_libraries(ppfast_example_${example}_bin PRIVATE ppfast::main ppfast::ppfast)
  set_target_properties(ppfast_example_${example}_bin PROPERTIES OUTPUT_NAME ${example}
                        RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/examples/bin)
  install(TARGETS ppfast_example_${example}_bin RUNTIME DESTINATION ppfast/examples/bin)
endforeach()

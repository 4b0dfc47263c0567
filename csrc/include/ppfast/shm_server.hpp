// Shared-memory mode for a simulator that has its own main(): link ppfast::main and call
//
//   int main(int argc, char** argv) {
//     if (int status = ppfast::serve_shm(argc, argv); status >= 0) return status;
//     ... the simulator's own command line and work ...
//   }
//
// ppfast.ShmModel([executable, its own arguments...]) appends `--ppfast-shm fd:C,A`.
#pragma once

#include "ppfast/ppfast.h"

extern "C" const ppfast_model_info* ppfast_model_entry(void);

namespace ppfast {

/// With `--ppfast-shm fd:C,A` anywhere on the command line, serves the ppfast host over
/// shared memory with `model` (by default the one PPFAST_MODEL exports) until it is done
/// and returns the exit status for main(); otherwise returns -1 and touches nothing, so
/// the simulator goes on with its own arguments.
int serve_shm(int argc, char** argv, const ppfast_model_info* model = ppfast_model_entry());

}  // namespace ppfast

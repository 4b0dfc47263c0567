// The simulator side of the shared-memory transport, linked into a simulator
// executable through ppfast::main.
#pragma once

#include "ppfast/ppfast.h"

namespace ppfast::shm {

/// What main() of a simulator executable does: with `--ppfast-shm fd:C,A` serve a ppfast
/// host over the inherited control and arena segments; otherwise run `model` standalone
/// and print its results (`-n N`, `--seed S`).  Returns the process exit status.
int simulator_main(int argc, char** argv, const ppfast_model_info* model);

}  // namespace ppfast::shm

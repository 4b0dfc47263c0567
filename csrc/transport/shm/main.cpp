// main() of a simulator executable (the ppfast::main library): the model is the one the
// simulator's source exports with PPFAST_MODEL(name, fn).
#include "transport/shm/server.hpp"

extern "C" const ppfast_model_info* ppfast_model_entry(void);

int main(int argc, char** argv) { return ppfast::shm::simulator_main(argc, argv, ppfast_model_entry()); }

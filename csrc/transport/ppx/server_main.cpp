// main() of a simulator executable that serves PPX (examples/bin/<name>_ppx): the model
// is the one the simulator's source exports with PPFAST_MODEL(name, fn).
#include "server.hpp"

int main(int argc, char** argv) { return ppfast::ppx_server_main(argc, argv, ppfast_model_entry()); }

// colo-tiny-model: writes a deterministic random model (config.json +
// model.safetensors) for tests and benchmarks. See tiny_model_main_lib.h.
#include "engine/model/tiny_model_main_lib.h"

int main(int argc, char** argv) { return colo::engine::TinyModelMain(argc, argv); }

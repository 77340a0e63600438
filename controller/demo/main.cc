#include "controller/demo/demo_trainer_main_lib.h"

int main(int argc, char** argv) { return colo::controller::demo::DemoTrainerMain(argc, argv); }

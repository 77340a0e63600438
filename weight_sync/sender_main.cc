#include "weight_sync/sender_main_lib.h"

int main(int argc, char** argv) {
  return colo::weight_sync::WeightSenderMain(argc, argv);
}

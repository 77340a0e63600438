// coloctl: operator CLI for the colo controller and engines.
#include <iostream>
#include <string>
#include <vector>

#include "controller/coloctl_lib.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  return colo::controller::ColoctlMain(args, std::cout, std::cerr);
}

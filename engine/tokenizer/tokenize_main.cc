#include "engine/tokenizer/tokenize_main_lib.h"

int main(int argc, char** argv) { return colo::tokenizer::TokenizeMain(argc, argv); }

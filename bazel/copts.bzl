"""Compiler options shared by colo targets."""

# Per-target options on top of the global -Wall -Wextra -Werror in .bazelrc.
COLO_COPTS = [
    "-Wnon-virtual-dtor",
    "-Wvla",
]

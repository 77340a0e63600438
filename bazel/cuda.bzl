"""CUDA C++ without rules_cuda: nvcc compiles each .cu into an object that a
cc_library links. Targets exist only under --config=cuda; in the default
build they are incompatible and `bazel build //...` skips them.
"""

# Incompatible unless --config=cuda (see //bazel:BUILD.bazel).
CUDA_ONLY = select({
    "//bazel:cuda_enabled": [],
    "//conditions:default": ["//bazel:cuda_build_required"],
})

# H100/H200 (sm_90) machine code plus compute_90 PTX for newer GPUs.
NVCC_ARCH_FLAGS = "-gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90"

def cuda_library(name, srcs, hdrs = [], cuda_hdrs = [], deps = [], visibility = None, testonly = False):
    """A cc_library over nvcc-compiled `srcs` (.cu files).

    Args:
      name: the cc_library.
      srcs: .cu files.
      hdrs: public headers of the library (C++ callable API).
      cuda_hdrs: other headers the .cu files include.
      deps: cc_library dependencies (their headers are not seen by nvcc;
        list such headers in cuda_hdrs).
      visibility: visibility of the library.
      testonly: as for cc_library.
    """
    objs = []
    for src in srcs:
        obj = "_" + name + "_objs/" + src.replace(".cu", ".o")
        native.genrule(
            name = name + "_nvcc_" + src.replace("/", "_").replace(".", "_"),
            srcs = [src] + hdrs + cuda_hdrs,
            outs = [obj],
            cmd = " ".join([
                "/usr/local/cuda/bin/nvcc -c -O3 -std=c++17",
                "-Xcompiler -fPIC -Xcompiler -Wall -Werror all-warnings",
                "--expt-relaxed-constexpr",
                NVCC_ARCH_FLAGS,
                "-I. -I$(GENDIR)",
                "$(location %s) -o $@" % src,
            ]),
            target_compatible_with = CUDA_ONLY,
            testonly = testonly,
        )
        objs.append(obj)
    native.cc_library(
        name = name,
        srcs = objs,
        hdrs = hdrs,
        deps = deps + ["@cuda//:cuda_runtime"],
        target_compatible_with = CUDA_ONLY,
        visibility = visibility,
        testonly = testonly,
    )

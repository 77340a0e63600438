"""Protobuf + gRPC code generation with Debian's protoc and plugins.

Offline replacement for rules_proto / grpc's bazel rules: one genrule runs
protoc over a set of .proto files, and a cc_library wraps the outputs.
Imports are resolved relative to the package that calls the macro, so
`proto/colo/v1/engine.proto` is imported as "colo/v1/engine.proto" and its
header is included as "colo/v1/engine.pb.h".
"""

def _stem(src):
    return src[:-len(".proto")]

def colo_cc_grpc_library(name, srcs, deps = [], visibility = None):
    """C++ messages and gRPC services for `srcs` (one library for all).

    Args:
      name: the cc_library to define.
      srcs: .proto files relative to the calling package.
      deps: other cc_library targets the generated code needs.
      visibility: visibility of the cc_library.
    """
    hdrs = []
    cc_srcs = []
    for src in srcs:
        stem = _stem(src)
        hdrs += [stem + ".pb.h", stem + ".grpc.pb.h"]
        cc_srcs += [stem + ".pb.cc", stem + ".grpc.pb.cc"]
    native.genrule(
        name = name + "_codegen",
        srcs = srcs,
        outs = hdrs + cc_srcs,
        cmd = " ".join([
            "protoc",
            "-I$$(dirname $(location BUILD.bazel))",
            "--cpp_out=$(RULEDIR)",
            "--grpc_out=$(RULEDIR)",
            "--plugin=protoc-gen-grpc=/usr/bin/grpc_cpp_plugin",
        ] + ["$(location %s)" % s for s in srcs]),
        tools = ["BUILD.bazel"],
    )
    native.cc_library(
        name = name,
        srcs = cc_srcs,
        hdrs = hdrs,
        includes = ["."],
        copts = ["-Wno-unused-parameter", "-Wno-error"],
        deps = deps + [
            "@system//:grpc++",
            "@system//:protobuf",
        ],
        visibility = visibility,
    )

def colo_py_grpc_library(name, srcs, proto_package, out_dir, visibility = None):
    """Python messages and gRPC stubs (`*_pb2.py`, `*_pb2_grpc.py`).

    Args:
      name: the filegroup of generated files.
      srcs: labels of .proto files, e.g. "//proto:colo/v1/engine.proto".
      proto_package: the -I root of the protos, e.g. "proto".
      out_dir: output folder relative to the calling package.
      visibility: visibility of the filegroup.
    """
    outs = []
    for src in srcs:
        stem = _stem(src.split(":")[-1])
        outs += [out_dir + "/" + stem + "_pb2.py", out_dir + "/" + stem + "_pb2_grpc.py"]
    native.genrule(
        name = name,
        srcs = srcs,
        outs = outs,
        cmd = " ".join([
            "protoc",
            "-I" + proto_package,
            "--python_out=$(RULEDIR)/" + out_dir,
            "--grpc_python_out=$(RULEDIR)/" + out_dir,
            "--plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin",
        ] + ["$(location %s)" % s for s in srcs]),
        visibility = visibility,
    )

"""Generates colo/v1/*_pb2{,_grpc}.py from the repository's proto/ with
Debian's protoc and grpc_python_plugin into build/gen (no network), then
builds as usual.
Set COLO_PROTO_DIR to build from somewhere else than ../../proto."""

import glob
import os
import shutil
import subprocess

from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))


def generate_stubs(out_dir: str) -> None:
    proto_dir = os.environ.get("COLO_PROTO_DIR", os.path.join(HERE, "..", "..", "proto"))
    protos = sorted(glob.glob(os.path.join(proto_dir, "colo", "v1", "*.proto")))
    if not protos:
        raise RuntimeError(f"no colo/v1/*.proto under {proto_dir} (set COLO_PROTO_DIR)")
    protoc = shutil.which("protoc")
    plugin = shutil.which("grpc_python_plugin")
    if not protoc or not plugin:
        raise RuntimeError("protoc and grpc_python_plugin are needed "
                           "(apt-get install protobuf-compiler protobuf-compiler-grpc)")
    os.makedirs(out_dir, exist_ok=True)
    subprocess.run([protoc, f"-I{proto_dir}", f"--python_out={out_dir}",
                    f"--grpc_python_out={out_dir}", f"--plugin=protoc-gen-grpc_python={plugin}"]
                   + protos, check=True)
    for pkg in ("colo", os.path.join("colo", "v1")):
        open(os.path.join(out_dir, pkg, "__init__.py"), "a").close()


# Generated before setup() so metadata, sdist and wheel builds all see them.
generate_stubs(os.path.join(HERE, "build", "gen"))

setup(
    package_dir={"colo_client": "colo_client", "colo": "build/gen/colo",
                 "colo.v1": "build/gen/colo/v1"},
)

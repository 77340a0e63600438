#!/usr/bin/env bash
# Installs what colo needs to build, test and run, from Debian's packages
# (and, from PyPI, transformers for the Hugging Face parity test and the test
# venv /opt/colo/venv with current torch and transformers 5.x). Idempotent
# and fast when everything is present. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  bazel-bootstrap libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc
  libabsl-dev libgtest-dev libgmock-dev libbenchmark-dev libgloo-dev nlohmann-json3-dev
  libopenblas-dev python3-grpcio python3-protobuf python3-numpy python3-torch python3-pip
  clang openssl python3-yaml python3-venv libpcre2-dev libsentencepiece-dev libicu-dev
)
# kubectl for //deploy:manifests_test (`kubectl kustomize`). Another kubectl
# (e.g. the Google Cloud SDK's package) conflicts with kubernetes-client and
# renders the same manifests, so it is kept when present.
command -v kubectl >/dev/null || PACKAGES+=(kubernetes-client)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
if ! /usr/bin/python3 -c "import transformers" 2>/dev/null; then
  echo "setup: installing tests/parity/requirements.txt" >&2
  /usr/bin/python3 -m pip install -q --break-system-packages -r tests/parity/requirements.txt
fi
# The test venv: PyPI's torch and transformers 5.x (tests/python/requirements.txt).
# It sees Debian's python3-grpcio/protobuf (the colo_client stubs) through
# --system-site-packages; its own torch/numpy shadow Debian's. Rebuilt when the
# requirements change (their hash is kept in the venv).
VENV=/opt/colo/venv
want=$(sha256sum tests/python/requirements.txt | cut -d' ' -f1)
if [[ "$(cat "$VENV/.colo-requirements" 2>/dev/null)" != "$want" ]]; then
  echo "setup: creating $VENV from tests/python/requirements.txt" >&2
  rm -rf "$VENV"
  /usr/bin/python3 -m venv --system-site-packages "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r tests/python/requirements.txt
  echo "$want" > "$VENV/.colo-requirements"
fi
echo "setup: ok" >&2

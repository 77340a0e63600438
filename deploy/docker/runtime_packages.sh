#!/bin/bash
# Prints the Debian packages that provide the shared libraries the given
# binaries link (ldd + dpkg -S), one per line, sorted. The Dockerfiles run it
# in the build stage and install exactly these in the runtime stage.
# Libraries not owned by a package (e.g. CUDA's from /usr/local/cuda) are
# reported on stderr and, when $COPY_UNOWNED_TO is set, copied there.
set -euo pipefail
(($#)) || { echo "usage: $0 BINARY..." >&2; exit 2; }
for bin in "$@"; do
  ldd "$bin" | awk '/=> \// {print $3} /^\s*\/lib/ {print $1}'
done | sort -u | while read -r lib; do
  real="$(readlink -f "$lib")"
  pkg="$(dpkg -S "$lib" 2>/dev/null || dpkg -S "$real" 2>/dev/null || true)"
  if [ -z "$pkg" ]; then
    if [ -n "${COPY_UNOWNED_TO:-}" ]; then
      mkdir -p "$COPY_UNOWNED_TO" && cp -L "$lib" "$COPY_UNOWNED_TO/"
      echo "runtime_packages: $lib is not from a Debian package (copied)" >&2
    else
      echo "runtime_packages: $lib is not from a Debian package (skipped)" >&2
    fi
    continue
  fi
  echo "${pkg%%:*}"
done | sort -u

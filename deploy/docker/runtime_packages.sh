#!/bin/bash
# Prints the Debian packages that provide the shared libraries the given
# binaries link (ldd + dpkg -S), one per line, sorted. The Dockerfiles run it
# in the build stage and install exactly these in the runtime stage.
# Libraries not owned by a package (e.g. CUDA's from /usr/local/cuda) are
# reported on stderr and, when $COPY_UNOWNED_TO is set, copied there.
# One dpkg -S call for all libraries: each call reads the whole package
# database, which took minutes per binary set on a loaded machine.
set -euo pipefail
(($#)) || { echo "usage: $0 BINARY..." >&2; exit 2; }
mapfile -t libs < <(for bin in "$@"; do
  ldd "$bin" | awk '/=> \// {print $3} /^\s*\/lib/ {print $1}'
done | sort -u)
((${#libs[@]})) || exit 0
# Both the linked path and its resolved file: a package may own either
# (usrmerge: /lib/x86_64-linux-gnu vs /usr/lib/x86_64-linux-gnu).
declare -A real
queries=()
for lib in "${libs[@]}"; do
  real[$lib]="$(readlink -f "$lib")"
  queries+=("$lib" "${real[$lib]}")
done
# "pkg[:arch][, pkg2]: /path" per owned path; unowned paths go to stderr.
declare -A owner
while IFS= read -r line; do
  path="${line##*: }"
  pkgs="${line%: *}"
  owner[$path]="${pkgs%%,*}"
done < <(dpkg -S "${queries[@]}" 2>/dev/null || true)
for lib in "${libs[@]}"; do
  pkg="${owner[$lib]:-${owner[${real[$lib]}]:-}}"
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

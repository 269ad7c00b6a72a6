#!/usr/bin/env bash
# Unpacks llama-cpp-python's sdist into DEST and applies patches/llama.cpp/*.patch to the llama.cpp it
# vendors, so that the wheel and the llama.cpp programs build the same source. Prints the unpacked path.
# Usage: patched_llama_source.sh SDIST_TARBALL DEST
set -euo pipefail
tarball=${1:?usage: patched_llama_source.sh SDIST_TARBALL DEST}
dest=${2:?usage: patched_llama_source.sh SDIST_TARBALL DEST}
patches=$(cd "$(dirname "$0")/../patches/llama.cpp" && pwd)
mkdir -p "$dest"
tar -xzf "$tarball" -C "$dest"
source_dir=$(echo "$dest"/llama_cpp_python-*)
# git apply works as plain patch outside a repository; the ceiling keeps it from finding one around DEST.
for patch in "$patches"/*.patch; do
    (cd "$source_dir/vendor/llama.cpp" && GIT_CEILING_DIRECTORIES=$(dirname "$dest") git apply "$patch") >&2
done
echo "$source_dir"

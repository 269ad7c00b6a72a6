#!/usr/bin/env bash
# Builds one llama.cpp program (llama-bench, ggml-rpc-server) from the llama.cpp source vendored in the
# installed llama-cpp-python's own sdist, with the wheel's patches, so that it runs the same code as the
# Python side; cached outside the repo. Usage: build_llama_tool.sh TARGET. Prints the program's path.
set -euo pipefail
target=${1:?usage: build_llama_tool.sh TARGET}
python=${PYTHON:-.venv/bin/python}
version=$("$python" -c "import llama_cpp; print(llama_cpp.__version__)")
# The same compiler flags as the installed wheel's build (LLAMA_CPP_CFLAGS, set by the Makefile), and
# its RPC backend, so that a program and the wheel speak the same RPC protocol.
flags=${LLAMA_CPP_CFLAGS-}
cmake_args="-DGGML_RPC=ON"
patches=$(cat "$(dirname "$0")"/../patches/llama.cpp/*.patch | sha256sum | cut -c1-12)
build=$(printf '%s' "$flags $cmake_args $patches" | sha256sum | cut -c1-12)
cache="${CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/backspace}/$target-$version-shared-$build"
if [ ! -x "$cache/$target" ]; then
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    "$python" -m pip download --quiet --no-binary :all: --no-deps "llama-cpp-python==$version" -d "$work" >&2
    source_dir=$(bash "$(dirname "$0")/patched_llama_source.sh" "$work"/llama_cpp_python-*.tar.gz "$work/src")/vendor/llama.cpp
    # llama-cpp-python's build: Release, for this CPU, as shared libraries (position-independent code,
    # which a static build, slightly faster, does not have: bench/NOTES.md). The binary finds its
    # libraries next to itself ($ORIGIN), so the cached copy outlives the build directory.
    cmake -S "$source_dir" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON $cmake_args \
        -DCMAKE_C_FLAGS="$flags" -DCMAKE_CXX_FLAGS="$flags" \
        -DCMAKE_BUILD_RPATH_USE_ORIGIN=ON -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF >&2
    nice -n 19 cmake --build "$work/build" --target "$target" -j "$(nproc)" >&2
    mkdir -p "$cache.partial"
    cp -P "$work/build/bin/$target" "$work/build/bin/"*.so* "$cache.partial/"
    rm -rf "$cache" && mv "$cache.partial" "$cache"
fi
echo "$cache/$target"

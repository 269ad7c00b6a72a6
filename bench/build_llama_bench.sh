#!/usr/bin/env bash
# Builds llama-bench from the llama.cpp source vendored in the installed llama-cpp-python's own sdist,
# so that native and Python numbers come from the same commit; cached outside the repo. Prints its path.
set -euo pipefail
python=${PYTHON:-.venv/bin/python}
version=$("$python" -c "import llama_cpp; print(llama_cpp.__version__)")
cache="${CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/backspace}/llama-bench-$version"
if [ ! -x "$cache/llama-bench" ]; then
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    "$python" -m pip download --quiet --no-binary :all: --no-deps "llama-cpp-python==$version" -d "$work" >&2
    tar -xzf "$work"/llama_cpp_python-*.tar.gz -C "$work"
    source_dir=$(echo "$work"/llama_cpp_python-*/vendor/llama.cpp)
    # llama-cpp-python's defaults (a Release build for this CPU), linked statically so that the
    # cached binary outlives the build directory.
    cmake -S "$source_dir" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
        -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF >&2
    cmake --build "$work/build" --target llama-bench -j "$(nproc)" >&2
    mkdir -p "$cache"
    cp "$work/build/bin/llama-bench" "$cache/"
fi
echo "$cache/llama-bench"

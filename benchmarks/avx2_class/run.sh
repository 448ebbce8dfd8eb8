#!/usr/bin/env bash
# Runs a command as on an AVX2-only x86-64 CPU (no AVX-512, AVX-VNNI, bfloat16 or AMX), for
# every library in it (TensorFlow's oneDNN, onnxruntime, LiteRT's XNNPACK, numpy, OpenCV):
#
#     benchmarks/avx2_class/run.sh python export_model.py ... --benchmark
#
# Builds avx2_class.so (see avx2_class.c) under build/ once, with the C compiler. Not for
# pytest or anything else that installs its own SIGSEGV handler.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$here/../../build/avx2_class"
lib="$out/avx2_class.so"
if [ ! -f "$lib" ] || [ "$here/avx2_class.c" -nt "$lib" ]; then
    mkdir -p "$out"
    ${CC:-cc} -O2 -shared -fPIC -o "$lib" "$here/avx2_class.c"
fi
export ONEDNN_MAX_CPU_ISA=AVX2
unset PYTHONFAULTHANDLER
LD_PRELOAD="$lib${LD_PRELOAD:+:$LD_PRELOAD}" exec "$@"

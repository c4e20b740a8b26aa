#!/usr/bin/env bash
# The GPU check (issue 23): on a machine with an NVIDIA GPU and no internet, a venv over the
# machine's own torch, liver-gan installed from carried wheels, the Inception weights in a temporary
# TORCH_HOME, nvidia-smi and the versions, then benchmarks/gpu_check.py's stages (at most 8 minutes
# on one H100); results under $OUT (or --out DIR): gpu_check.json, gpu_check.md, gpu_check.log, grids/.
#
#   benchmarks/gpu_check.sh --prepare           # here, with PyPI: fill .device/ (wheels, weights)
#   benchmarks/gpu_check.sh                     # there: everything
#   benchmarks/gpu_check.sh --only tests fid    # there: some stages
#   benchmarks/gpu_check.sh --dry-run --out DIR # any CPU: every stage tiny, this interpreter, no venv
#
# The device tool's machine gets the working tree and the carried paths only (../shared stays
# behind) and at most 64 MiB per call, but the weights alone are 95.7 MB. --prepare therefore
# writes, into .device/ (which ignores itself through its own .gitignore), the wheels liver-gan needs beyond the
# machine's image (.device/wheels, about 6 MB) and the weights in two halves (.device/fid-1,
# .device/fid-2). Two calls in a row, the second within the 30 s the machine stays warm, so that
# the first half (and the venv, .device/venv) are still there:
#   run(carry=[".device/wheels", ".device/fid-1"], command="benchmarks/gpu_check.sh --only training ddpm thesis torchrun")
#   run(carry=[".device/wheels", ".device/fid-2"], command="benchmarks/gpu_check.sh --only tests fid quality")
# A stage whose weights are incomplete fails with a message that says so; the others still run.
set -euo pipefail
cd "$(dirname "$0")/.."

WEIGHTS_NAME=pt_inception-2015-12-05-6726825d.pth
WEIGHTS_SHA256=55363ed08c5f6d95a8089af787e7d3b716549833466f233c6a30b46ab692c0a9
HALF_BYTES=$((48 * 1024 * 1024))

if [ "${1:-}" = "--prepare" ]; then
    weights=${WEIGHTS:-../shared/fid/$WEIGHTS_NAME}
    [ -f "$weights" ] || { echo "gpu_check: $weights not found; set WEIGHTS=/path/to/$WEIGHTS_NAME" >&2; exit 2; }
    rm -rf .device/wheels .device/fid-1 .device/fid-2
    mkdir -p .device/wheels .device/fid-1 .device/fid-2
    printf '*\n' >.device/.gitignore  # the folder ignores itself: it travels only where carried
    head -c "$HALF_BYTES" "$weights" >.device/fid-1/weights.part
    tail -c +$((HALF_BYTES + 1)) "$weights" >.device/fid-2/weights.part
    # What the machine's image lacks (KINDS.md's package list), for its Python 3.12 on x86-64;
    # antlr4's runtime is an sdist on PyPI, so it is built into a wheel here.
    platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        "${platforms[@]}" -d .device/wheels hydra-core==1.3.2 omegaconf==2.3.0 nibabel pytorch-fid==0.3.0 \
        "monai>=1.4" setuptools
    python3 -m pip wheel -q --no-deps -w .device/wheels antlr4-python3-runtime==4.9.3
    du -sh .device/*
    exit 0
fi

dry_run=false
for arg in "$@"; do [ "$arg" = "--dry-run" ] && dry_run=true; done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export TORCH_HOME="$work/torch_home"
mkdir -p "$TORCH_HOME/hub/checkpoints"
weights="$TORCH_HOME/hub/checkpoints/$WEIGHTS_NAME"

if $dry_run; then
    # CI and tests: this interpreter and its installed liver-gan, the weights by link.
    python=${PYTHON:-python3}
    for source in "${GPU_CHECK_WEIGHTS:-}" ../shared/fid/$WEIGHTS_NAME; do
        if [ -n "$source" ] && [ -f "$source" ]; then ln -s "$(realpath "$source")" "$weights"; break; fi
    done
else
    if [ ! -d .device/wheels ]; then
        echo "gpu_check: .device/wheels is missing: run benchmarks/gpu_check.sh --prepare where PyPI is reachable and carry .device/wheels" >&2
        exit 2
    fi
    if [ ! -x .device/venv/bin/python ]; then
        # The image's torch (built for its CUDA) stays; only what it lacks comes from the wheels.
        python3 -m venv --system-site-packages .device/venv
    fi
    python=.device/venv/bin/python
    "$python" -m pip install -q --no-index --find-links .device/wheels -e . 2>&1 | tail -n 5
    if [ -f .device/fid-1/weights.part ] && [ -f .device/fid-2/weights.part ]; then
        cat .device/fid-1/weights.part .device/fid-2/weights.part >"$weights"
        if ! echo "$WEIGHTS_SHA256  $weights" | sha256sum -c --quiet; then
            echo "gpu_check: the joined weights' sha256 differs; rerun benchmarks/gpu_check.sh --prepare" >&2
            rm -f "$weights"
        fi
    else
        echo "gpu_check: .device/fid-1 or .device/fid-2 missing: the FID stages will fail (see the header)" >&2
    fi
    nvidia-smi || echo "gpu_check: nvidia-smi failed" >&2
fi
"$python" -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, "gpu", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")'
export PYTHONUNBUFFERED=1
"$python" benchmarks/gpu_check.py "$@"

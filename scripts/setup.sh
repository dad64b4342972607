#!/usr/bin/env bash
# Set up .venv with AutoVoice and everything it can use (desktop app, headless server, neural
# voices, tests). Safe to run again: it does nothing when pyproject.toml and this script are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
    echo "AutoVoice needs Python 3.10 or newer; set PYTHON=/path/to/python3.11 and try again." >&2
    exit 1
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv

stamp=.venv/.autovoice-setup
# setup.py and the native callback's source too: a change rebuilds the extension (pip install -e below).
want=$(cat pyproject.toml setup.py engine/io/native_build.py engine/io/native_callback.c scripts/setup.sh | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi

pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }
echo "Setting up .venv (first time takes a minute or two)..." >&2
# setuptools<81 still ships pkg_resources, which pyworld (test-only pitch reference) imports.
pip install "setuptools<81" wheel
# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build where a CPU build will do.
# Override with e.g. TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126".
# shellcheck disable=SC2086
pip install ${TORCH_SPEC:-torch==2.13.0}
# neural includes demucs-infer (htdemucs for song covers): its dependencies (einops, julius, pyyaml,
# soundfile) need no torchaudio, so it installs normally over the pinned torch.
pip install -e ".[gui,server,neural,test]"
# torchfcpe ships the FCPE pitch model's weights; its declared torchaudio dependency is not needed by
# the parts we use and breaks CPU-only torch installs, hence --no-deps.
pip install --no-deps "torchfcpe==0.0.4"
# Re-pin last: torch requires setuptools>=77.0.3 and an install step above may have raised it past 80.
pip install "setuptools>=77.0.3,<81"
pip install --no-build-isolation "pyworld==0.3.5"
echo "$want" > "$stamp"

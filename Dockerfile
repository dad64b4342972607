# syntax=docker/dockerfile:1
# AutoVoice headless server (`autovoice serve`) on an NVIDIA GPU.
#
#   docker build -t autovoice .
#   docker run --gpus all -p 127.0.0.1:5000:5000 -e AUTOVOICE_TOKEN=<16+ characters> \
#       -v autovoice-data:/data -v autovoice-config:/config autovoice
#
# The CUDA version of the base image and of the torch wheel must agree on major.minor (12.8 and
# cu128 here), and torch's version is the one scripts/setup.sh pins: tests/server/test_server_packaging.py
# reads both files and fails if they drift apart. Without a GPU the same image runs on the CPU.

# ---- build: a virtual environment with AutoVoice, its server and neural extras, and CUDA torch
FROM nvidia/cuda:12.8.1-runtime-ubuntu24.04 AS build
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-dev gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/autovoice
ENV PATH=/opt/autovoice/bin:$PATH
# torch first, from PyTorch's CUDA 12.8 index: the package AutoVoice then installs keeps this build.
RUN pip install "torch==2.13.0" --index-url https://download.pytorch.org/whl/cu128
WORKDIR /src
# setup.py builds the native audio callback (engine/io/native_callback.c) with the compiler above.
COPY pyproject.toml setup.py README.md autovoice.py ./
COPY engine ./engine
COPY autovoice_desktop ./autovoice_desktop
COPY cuda_ops ./cuda_ops
# The GUI extra is left out (no display in a container). torchfcpe without its dependencies, as
# scripts/setup.sh does: its torchaudio requirement is not used and would pull another torch.
# onnxruntime-gpu replaces onnxruntime (both write the same package folder: remove the CPU one
# first), so ONNX voices run on the GPU; the engine checks session.get_providers() and says when not.
RUN pip install ".[server,neural]" \
 && pip uninstall -y onnxruntime && pip install "onnxruntime-gpu>=1.20" \
 && pip install --no-deps "torchfcpe==0.0.4" \
 && cd / && python -c "import engine.server.app, engine.io._native_callback, torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda)"

# ---- runtime: the same CUDA runtime base, the environment, an unprivileged user
FROM nvidia/cuda:12.8.1-runtime-ubuntu24.04
ENV DEBIAN_FRONTEND=noninteractive
# libportaudio2: `autovoice serve --live` with sound devices passed into the container.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 libportaudio2 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --create-home --home-dir /home/autovoice autovoice \
 && mkdir -p /data /config \
 && chown autovoice:autovoice /data /config
COPY --from=build /opt/autovoice /opt/autovoice
# Voices and models (voices/, models/) live in /data, settings.json in /config: both volumes.
ENV PATH=/opt/autovoice/bin:$PATH \
    AUTOVOICE_DATA_DIR=/data \
    AUTOVOICE_CONFIG_DIR=/config \
    XDG_CACHE_HOME=/tmp/.cache \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
VOLUME ["/data", "/config"]
USER autovoice
WORKDIR /home/autovoice
EXPOSE 5000
# Liveness only: a container whose voice is still loading is alive, not yet ready (/health/ready).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/health/live', timeout=4)"]
# The token comes from the environment (AUTOVOICE_TOKEN); without one the server refuses to start
# on 0.0.0.0 and says so.
CMD ["autovoice", "serve", "--host", "0.0.0.0", "--port", "5000"]

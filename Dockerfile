# syntax=docker/dockerfile:1
# GPU image for `elastic serve`. The base already carries CUDA 13.0, cuDNN 9, torch 2.14.1 and torchvision
# 0.29.1 (the versions pyproject.toml pins), so installing the project adds only the light serving deps.
FROM pytorch/pytorch:2.14.1-cuda13.0-cudnn9-runtime

# The base is Ubuntu's Python (PEP 668): the image is the environment, so pip installs into it.
ENV PIP_BREAK_SYSTEM_PACKAGES=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

WORKDIR /opt/elastic
COPY pyproject.toml README.md ./
COPY elastic_anytime/ elastic_anytime/
COPY benchmarks/ benchmarks/
COPY elastic_cli/ elastic_cli/
COPY models/ models/
COPY service/ service/
COPY training/ training/

# Constrain pip to the torch/torchvision the base ships: if the project ever asks for other versions the build
# fails here instead of silently pulling a multi-GB wheel. No extras: training tools (tqdm, matplotlib) stay out.
# The shipped checkpoint is package data of `elastic_anytime.models.pretrained`, so it lands in site-packages with the code;
# the check (-I: not from the source tree in the working dir) fails the build if it did not.
# (Local labels like +cu130 are cut: pip cannot match `torch==2.14.1` against a `==2.14.1+cu130` constraint.)
RUN python3 -c "import torch as t, torchvision as v; print('torch==' + t.__version__.split('+')[0]); print('torchvision==' + v.__version__.split('+')[0])" \
        > /tmp/base-constraints.txt \
    && python3 -m pip install --constraint /tmp/base-constraints.txt . \
    && rm -rf /tmp/base-constraints.txt /opt/elastic/build \
    && python3 -I -c "from elastic_anytime.models.pretrained import default_checkpoint as d; assert (d() / 'model.safetensors').is_file(), d()" \
    && groupadd --gid 10001 elastic \
    && useradd --create-home --uid 10001 --gid 10001 --shell /usr/sbin/nologin elastic \
    && mkdir -p /models \
    && chown elastic:elastic /models

# /models: mount other checkpoints here and point ELASTIC_CHECKPOINT at one (see README "Deploy").
# `elastic serve` reads ELASTIC_HOST/PORT/WORKERS and every other ELASTIC_* setting itself; with
# ELASTIC_WORKERS > 1 it points PROMETHEUS_MULTIPROC_DIR at an emptied directory (a fresh one under /tmp
# unless set), so that /metrics merges all workers.
ENV ELASTIC_HOST=0.0.0.0 \
    ELASTIC_PORT=8000 \
    ELASTIC_WORKERS=1

# numeric, so Kubernetes runAsNonRoot can verify it
USER 10001:10001
WORKDIR /home/elastic
EXPOSE 8000

# Liveness only (the model may still be calibrating: /readyz is for the load balancer). python, no curl.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('ELASTIC_PORT', '8000'), timeout=4)"]

# the same command runs the server outside the image; arguments after the image name are appended
ENTRYPOINT ["elastic", "serve"]

# slimgate gateway (with the distill worker) as a container.
# Build: docker build -t slimgate .   Run: see docker-compose.yml and docs/deploy.md.
# The pip steps are the Makefile's install recipe, in the same order (tests/test_docker.py).

FROM python:3.11-slim AS builder

# torch's default Linux wheels pull in CUDA (several GB); this index serves the same version
# built for CPU. Build with --build-arg PIP_EXTRA_INDEX_URL= to get the CUDA build instead.
ARG PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
# Empty (ignored by pip) unless a build without that index serves the CPU wheel from a
# directory or URL of its own (tests/container/build.sh does, offline from PyTorch's index).
ARG PIP_FIND_LINKS=
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH

# torch is installed first and pinned: any other version pulls a multi-GB CUDA build.
# DL3013 (unpinned pip): the newest pip, as `make install` does.
# hadolint ignore=DL3013
RUN python -m venv /opt/venv \
    && pip install --upgrade pip \
    && pip install "torch==2.13.0"

WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY distill ./distill
COPY policies ./policies
# DL3013: this is slimgate itself; its dependency ranges live in pyproject.toml.
# hadolint ignore=DL3013
RUN pip install ".[distill]"
# torch's wheel carries its own C++ test binaries (torch/test, torch/bin/test_*, *Test: about
# 130 MB of the image); nothing imports or runs them. torch_shm_manager and protoc stay.
RUN sp="$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
    && rm -rf "$sp/torch/test" "$sp"/torch/bin/test_* "$sp"/torch/bin/*Test


FROM python:3.11-slim

# No model-hub downloads at import; litellm's bundled price map instead of a fetch at start.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LITELLM_LOCAL_MODEL_COST_MAP=True \
    HF_HOME=/data/hf

RUN groupadd --system --gid 10001 slimgate \
    && useradd --system --uid 10001 --gid slimgate --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin slimgate \
    && mkdir -p /data/students /etc/slimgate \
    && chown -R slimgate:slimgate /data

COPY --from=builder /opt/venv /opt/venv

# The store and the students live on the volume. Relative paths in the config resolve here,
# so the defaults (store.path = "slimgate.db", distill.students_dir = "students") land in it.
WORKDIR /data
VOLUME /data
USER 10001:10001
EXPOSE 8080

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ.get('SLIMGATE_HEALTH_URL', 'http://127.0.0.1:8080/healthz'), timeout=4)"]

CMD ["slimgate", "serve", "--config", "/etc/slimgate/config.toml", "--host", "0.0.0.0"]

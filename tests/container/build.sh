#!/usr/bin/env bash
# Builds the slimgate image from the unchanged Dockerfile on this machine: the base from
# base_image.sh (a local stand-in for python:3.11-slim), pip through the host's network, and
# torch's CPU wheel from a local directory when one is there (PyTorch's index is unreachable
# here; the default PyPI torch would be the multi-GB CUDA build). Prints size and build time.
# Usage: tests/container/build.sh [IMAGE_TAG]   (default slimgate:test)
set -euo pipefail
cd "$(dirname "$0")/../.."

IMAGE=${1:-slimgate:test}
WHEELS=${SLIMGATE_TORCH_WHEELS:-/opt/wheels}   # a directory holding torch-2.13.0+cpu-*.whl

tests/container/base_image.sh

args=()
server_pid=
if compgen -G "$WHEELS/torch-2.13.0+cpu-*.whl" >/dev/null; then
    # Serve only the torch wheel over loopback: the build reaches it through --network host.
    links=$(mktemp -d /tmp/slimgate-links.XXXXXX)
    cp "$WHEELS"/torch-2.13.0+cpu-*.whl "$links"/
    # The URL is a build argument and so part of the layer cache's key: a fixed port keeps
    # the torch layer cached from one run to the next (any free port when it is taken).
    port=$(python3 -c 'import socket
s = socket.socket()
try:
    s.bind(("127.0.0.1", 38417))
except OSError:
    s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])')
    python3 -m http.server "$port" --bind 127.0.0.1 --directory "$links" >/dev/null 2>&1 &
    server_pid=$!
    trap 'kill "$server_pid" 2>/dev/null; rm -rf "$links"' EXIT
    for _ in $(seq 50); do
        python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/')" \
            2>/dev/null && break
        sleep 0.1
    done
    args+=(--build-arg PIP_EXTRA_INDEX_URL= --build-arg "PIP_FIND_LINKS=http://127.0.0.1:$port/")
    echo "torch: the local CPU wheel from $WHEELS (served on 127.0.0.1:$port)"
else
    echo "torch: from PyTorch's CPU index (no local wheel in $WHEELS)"
fi

start=$(date +%s)
docker build --network host "${args[@]}" -t "$IMAGE" . >/tmp/slimgate-image-build.log 2>&1 \
    || { tail -40 /tmp/slimgate-image-build.log >&2; echo "image build failed" >&2; exit 1; }
secs=$(( $(date +%s) - start ))
size=$(docker image inspect -f '{{.Size}}' "$IMAGE")
echo "image $IMAGE: $((size / 1000000)) MB, built in ${secs} s (log: /tmp/slimgate-image-build.log)"

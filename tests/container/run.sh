#!/usr/bin/env bash
# The real container, end to end (.ci/run calls this after the test suite): build the image,
# chat through it against a loopback teacher, restart it and find the store on its volume;
# then docker-compose.scale.yml: PostgreSQL, two gateway replicas and a worker, traffic
# through both replicas. Where no Docker engine can be started it says so and exits 0; once
# the image has built, any misbehaviour fails. Usage: tests/container/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

PY=${SLIMGATE_PYTHON:-.venv/bin/python}   # the venv with the openai SDK and PyYAML
IMAGE=slimgate:test
PG_IMAGE=slimgate-local/postgres:15
skip() { echo "SKIPPED the container tests: $*" >&2; exit 0; }

# --- a Docker engine: the running one, else one started here (overlay2, else vfs) --------
started=
stop_engine() {
    [ -n "$started" ] || return 0
    kill "$started" 2>/dev/null || true
    for _ in $(seq 30); do kill -0 "$started" 2>/dev/null || break; sleep 1; done
}
trap stop_engine EXIT
if ! docker info >/dev/null 2>&1; then
    [ "$(id -u)" = 0 ] || skip "no Docker engine running and not root to start one"
    if ! command -v dockerd >/dev/null 2>&1; then
        { apt-get update -q && apt-get install -y -q docker.io; } >/dev/null 2>&1 \
            || skip "docker.io could not be installed"
    fi
    for driver in overlay2 vfs; do
        # No bridge and no iptables: sandboxes rarely allow them; containers use --network host.
        dockerd --storage-driver="$driver" --iptables=false --bridge=none \
            >/tmp/slimgate-dockerd.log 2>&1 &
        started=$!
        for _ in $(seq 30); do
            docker info >/dev/null 2>&1 && break 2
            kill -0 "$started" 2>/dev/null || break
            sleep 1
        done
        stop_engine; started=
    done
    docker info >/dev/null 2>&1 \
        || skip "dockerd would not start here (log: /tmp/slimgate-dockerd.log)"
    echo "started dockerd ($(docker info -f '{{.Driver}}') storage) for these tests"
fi
command -v debootstrap >/dev/null 2>&1 \
    || { apt-get update -q && apt-get install -y -q debootstrap; } >/dev/null 2>&1 || true
tests/container/base_image.sh \
    || skip "no base image: debootstrap could not build one (no Debian mirror reachable?)"

# --- from here on a failure is the image's or the compose file's -------------------------
tests/container/build.sh "$IMAGE"
"$PY" tests/container/check.py single "$IMAGE"

if ! command -v docker-compose >/dev/null 2>&1 && ! docker compose version >/dev/null 2>&1; then
    { apt-get update -q && apt-get install -y -q docker-compose; } >/dev/null 2>&1 \
        || skip "no compose client (docker-compose or the compose plugin); the single" \
                "container test passed"
fi
docker build --network host -q -t "$PG_IMAGE" -f tests/container/postgres.Dockerfile \
    tests/container >/dev/null
"$PY" tests/container/check.py compose "$IMAGE" "$PG_IMAGE"
echo "container tests passed"

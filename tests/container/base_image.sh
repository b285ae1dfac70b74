#!/usr/bin/env bash
# LOCAL TEST BUILDS ONLY. This machine reaches no image registry, so the Dockerfile's base
# (python:3.11-slim from Docker Hub) cannot be pulled here. This script builds a stand-in
# from Debian's own packages with debootstrap (bookworm, whose python3 is 3.11), imports it
# and tags it python:3.11-slim in the local engine, so `docker build` of the unchanged
# Dockerfile works. It is NOT the real python:3.11-slim (Python is Debian's /usr/bin/python3
# rather than a source build in /usr/local); real-world builds pull the real one.
# Skips when the tag already exists. Usage: tests/container/base_image.sh [TAG]
set -euo pipefail

TAG=${1:-python:3.11-slim}
LOCAL=slimgate-local/debian-python:bookworm   # the same image under an honest name
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

if docker image inspect "$TAG" >/dev/null 2>&1; then
    echo "base image $TAG already present: reused"
    exit 0
fi
if docker image inspect "$LOCAL" >/dev/null 2>&1; then
    docker tag "$LOCAL" "$TAG"
    echo "base image $LOCAL present: tagged $TAG"
    exit 0
fi
command -v debootstrap >/dev/null 2>&1 || { apt-get update -q && apt-get install -y -q debootstrap; }

root=$(mktemp -d /tmp/slimgate-rootfs.XXXXXX)
cleanup() {  # debootstrap mounts proc and sys inside; never delete through a mount
    for m in proc sys dev/pts; do umount "$root/$m" 2>/dev/null || true; done
    rm -rf --one-file-system "$root"
}
trap cleanup EXIT
start=$(date +%s)
# minbase: essential packages + apt. python-is-python3 gives `python` as the real image has;
# python3-venv brings ensurepip (pip inside a venv); ca-certificates for HTTPS.
debootstrap --variant=minbase \
    --include=python3,python3-venv,python-is-python3,ca-certificates,netbase,tzdata \
    bookworm "$root" "$MIRROR" >/tmp/slimgate-debootstrap.log 2>&1 \
    || { tail -30 /tmp/slimgate-debootstrap.log >&2; exit 1; }

# Trim what a slim image leaves out: package caches, docs, man pages, translations.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
    "$root"/usr/share/locale/* "$root"/var/log/*.log "$root"/tmp/*
# Same apt behaviour as the official Debian images: no recommends, no docs on later installs.
printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' \
    >"$root"/etc/apt/apt.conf.d/99slim
printf 'path-exclude /usr/share/doc/*\npath-exclude /usr/share/man/*\n' \
    >"$root"/etc/dpkg/dpkg.cfg.d/99slim

# This machine reaches PyPI through a TLS-inspecting egress proxy whose CA the host trusts:
# the stand-in trusts the host's CA bundle too, and pip (whose own bundle would refuse it)
# is pointed at it with PIP_CERT. A real python:3.11-slim needs neither.
cp /etc/ssl/certs/ca-certificates.crt "$root"/etc/ssl/certs/ca-certificates.crt

tar -C "$root" -c . | docker import \
    --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    - "$LOCAL" >/dev/null
docker tag "$LOCAL" "$TAG"
size=$(docker image inspect -f '{{.Size}}' "$LOCAL")
echo "base image $LOCAL tagged $TAG (local stand-in): $((size / 1000000)) MB," \
     "built in $(( $(date +%s) - start )) s"

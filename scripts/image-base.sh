#!/usr/bin/env bash
# Build a local stand-in for python:3.11-slim from Debian packages, for machines
# that reach Debian's archive but no image registry (podman import, no pull).
#
#   scripts/image-base.sh [TAG]        (default localhost/demohub-base:py3.11-bookworm)
#
# Debian 12 (bookworm) ships Python 3.11 as its python3, so a minimal bookworm root
# file system with python3, venv (ensurepip), CA certificates, netbase and tzdata is
# what the Dockerfile expects of its base: `python3 -m venv` works and TLS verifies.
# Differences from python:3.11-slim: Python 3.11.2 from Debian instead of the newest
# 3.11.x built from source under /usr/local, and pip comes from ensurepip inside the
# venv the Dockerfile makes (the slim image has a system pip; the Dockerfile never uses it).
set -euo pipefail
tag=${1:-localhost/demohub-base:py3.11-bookworm}
command -v mmdebstrap >/dev/null || { echo "needs mmdebstrap: apt-get install mmdebstrap" >&2; exit 1; }
command -v podman >/dev/null || { echo "needs podman: apt-get install podman runc" >&2; exit 1; }

rootfs=$(mktemp --suffix=.tar)
trap 'rm -f "$rootfs"' EXIT
# minbase: essential + apt only; no docs, man pages or locales other than C.UTF-8 (as -slim).
mmdebstrap --variant=minbase --quiet \
  --include=python3,python3-venv,python-is-python3,ca-certificates,netbase,tzdata \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
  bookworm "$rootfs"

podman import \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["python3"]' \
  --message "Debian bookworm minbase + python3.11 (scripts/image-base.sh)" \
  "$rootfs" "$tag" >/dev/null
echo "$tag: $(podman image inspect --format '{{.Size}}' "$tag" | numfmt --to=iec) ($(podman run --rm --runtime runc --cgroup-manager=cgroupfs --ulimit nofile=4096:4096 --ulimit nproc=4096:4096 --network none "$tag" python3 --version))"

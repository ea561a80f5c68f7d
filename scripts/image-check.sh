#!/usr/bin/env bash
# Build the Space's image with podman and run it as the Space would (tests/test_image.py).
#
#   scripts/image-check.sh              build (timed), then run the checks
#   scripts/image-check.sh --build-only build only (what tests/test_image.py calls when the image is missing)
#   scripts/image-check.sh --no-build   run the checks on the image already built
#
# Settings (environment):
#   HUB_IMAGE     tag to build and check             (localhost/demohub:check)
#   BASE          base image; unset: python:3.11-slim if present here, else the Debian-built
#                 stand-in from scripts/image-base.sh (built when missing)
#   TORCH_INDEX   where torch/torchvision come from; unset: PyTorch's CPU index if it answers,
#                 else the first local index holding torch, else PyPI (PyPI's CUDA build)
#   LOCAL_INDEXES folders holding a PEP 503 `simple/` index, mounted read-only into the build
#                 and asked before PyPI (default: /opt/pypi /opt/pypi-more where they exist)
#
# Needs root, podman, runc (and mmdebstrap for the base). Containers run with runc,
# cgroupfs and explicit ulimits below the machine's hard limits (crun and podman's
# default ulimits fail on some kernels); every port is published on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=all
case "${1:-}" in
  --build-only) mode=build ;;
  --no-build) mode=check ;;
  "") ;;
  *) echo "usage: $0 [--build-only|--no-build]" >&2; exit 2 ;;
esac

export HUB_IMAGE=${HUB_IMAGE:-localhost/demohub:check}
podman=(podman --runtime runc --cgroup-manager=cgroupfs)
limit() { local hard=$1 want=$2; [ "$hard" = unlimited ] && echo "$want" || echo $(( want < hard ? want : hard - 1 )); }
nofile=$(limit "$(ulimit -Hn)" 16384)
nproc=$(limit "$(ulimit -Hu)" 8192)
ulimits=(--ulimit "nofile=$nofile:$nofile" --ulimit "nproc=$nproc:$nproc")
artifacts=test-artifacts/image
mkdir -p "$artifacts"

build() {
  local base=${BASE:-}
  if [ -z "$base" ]; then
    if "${podman[@]}" image exists python:3.11-slim; then
      base=python:3.11-slim
    else
      base=localhost/demohub-base:py3.11-bookworm
      "${podman[@]}" image exists "$base" || scripts/image-base.sh "$base"
    fi
  fi

  # pip inside the build: the local indexes first, then PyPI, with this machine's CA bundle
  # (a TLS-inspecting proxy signs with its own CA).
  conf=$(mktemp -d)
  trap 'rm -rf "$conf"' EXIT
  local mounts=() urls=()
  for dir in ${LOCAL_INDEXES-/opt/pypi /opt/pypi-more}; do
    [ -d "$dir/simple" ] || continue
    mounts+=(--volume "$dir:$dir:ro")
    urls+=("file://$dir/simple")
  done
  cp /etc/ssl/certs/ca-certificates.crt "$conf/ca.crt"
  {
    echo "[global]"
    echo "index-url = ${urls[0]:-https://pypi.org/simple}"
    echo "extra-index-url = ${urls[*]} https://pypi.org/simple"
    echo "cert = /etc/pip-build/ca.crt"
  } > "$conf/pip.conf"
  chmod -R a+rX "$conf"  # the build's RUN steps are uid 1000; pip skips a config it cannot read

  local torch_index=${TORCH_INDEX:-}
  if [ -z "$torch_index" ]; then
    if curl -sf -m 10 -o /dev/null https://download.pytorch.org/whl/cpu/torch/; then
      torch_index=https://download.pytorch.org/whl/cpu
    else
      torch_index=https://pypi.org/simple
      for url in "${urls[@]}"; do
        [ -d "${url#file://}/torch" ] && { torch_index=$url; break; }
      done
    fi
  fi

  echo "building $HUB_IMAGE from $base, torch from $torch_index (load: $(cut -d' ' -f1-3 /proc/loadavg))" >&2
  local started=$SECONDS load_before
  load_before=$(cut -d' ' -f1-3 /proc/loadavg)
  "${podman[@]}" build "${ulimits[@]}" "${mounts[@]}" --volume "$conf:/etc/pip-build:ro" \
    --build-arg "BASE=$base" --build-arg "TORCH_INDEX=$torch_index" \
    --build-arg PIP_CONFIG_FILE=/etc/pip-build/pip.conf \
    --tag "$HUB_IMAGE" . > "$artifacts/build.log" 2>&1 \
    || { tail -40 "$artifacts/build.log" >&2; echo "build failed: $artifacts/build.log" >&2; return 1; }
  local seconds=$(( SECONDS - started ))
  local size torch
  size=$("${podman[@]}" image inspect --format '{{.Size}}' "$HUB_IMAGE")
  torch=$("${podman[@]}" run --rm --network none "${ulimits[@]}" "$HUB_IMAGE" \
          python -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda)')
  cat > "$artifacts/build.json" <<EOF
{"tag": "$HUB_IMAGE", "base": "$base", "torch_index": "$torch_index", "torch": "$torch",
 "build_s": $seconds, "size_bytes": $size, "load_before": "$load_before", "load_after": "$(cut -d' ' -f1-3 /proc/loadavg)"}
EOF
  echo "built $HUB_IMAGE in ${seconds} s: $(numfmt --to=si "$size")B, torch $torch" >&2
}

[ "$mode" = check ] || build
[ "$mode" = build ] && exit 0

[ -x .venv/bin/python ] || scripts/setup.sh --test
HUB_IMAGE_CHECK=1 .venv/bin/python -m pytest -m image tests/test_image.py -v -s
echo "figures: $artifacts/figures.json, $artifacts/build.json" >&2

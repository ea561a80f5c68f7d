#!/usr/bin/env bash
# Set up a fresh machine: the virtual environment at .venv/ with pinned
# requirements, and (with --test) headless Chromium from Debian for the browser
# tests. Safe to run again: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi

stamp=.venv/.requirements-installed
reqs=(requirements.txt)
[ "$want_test" = 1 ] && reqs+=(requirements-dev.txt)
wanted=$(cat "${reqs[@]}" $([ "$want_test" = 1 ] && echo requirements-build.txt) | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
  args=()
  for r in "${reqs[@]}"; do args+=(-r "$r"); done
  .venv/bin/python -m pip install --quiet --disable-pip-version-check "${args[@]}"
  if [ "$want_test" = 1 ]; then  # build-time inputs whose declared dependencies are not needed
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-build.txt
  fi
  echo "$wanted" > "$stamp"
fi

if [ "$want_test" = 1 ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing Debian's chromium for the browser tests" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "chromium is not installed and we are not root: browser tests will be skipped" >&2
  fi
fi

# The search demo's tests build a small index from WordNet (Debian's wordnet-base) and its
# evaluation reads Webster 1913 (dict-gcide); neither is needed at run time.
if [ "$want_test" = 1 ] && { [ ! -f /usr/share/wordnet/data.noun ] || [ ! -f /usr/share/dictd/gcide.index ]; }; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing Debian's wordnet-base and dict-gcide for the search demo's tests" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wordnet-base dict-gcide >/dev/null
  else
    echo "wordnet-base / dict-gcide are not installed and we are not root: search tests will be skipped" >&2
  fi
fi

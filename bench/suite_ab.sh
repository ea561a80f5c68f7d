#!/bin/bash
# The main pytest run (as `make test` runs it) of two commits, each in a fresh
# clone, alternated, with its wall time and CPU (user + sys of pytest and every
# process it reaped):
#
#     bench/suite_ab.sh OLD NEW [ROUNDS] [OUT]
#
# Each line of OUT/suite_ab.txt: which, commit, round, exit code, seconds, CPU.
# PAUSE=PATTERN stops the processes matching PATTERN (pgrep -f) with SIGSTOP for
# the whole run and continues them at the end (a training run beside it).
set -u
OLD=$1; NEW=$2; ROUNDS=${3:-1}; OUT=${4:-$PWD/.cache/suite_ab}
REPO=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$OUT"
PAUSED=""
if [ -n "${PAUSE:-}" ]; then PAUSED=$(pgrep -f "$PAUSE" || true); fi
[ -n "$PAUSED" ] && kill -STOP $PAUSED
trap '[ -n "$PAUSED" ] && kill -CONT $PAUSED' EXIT
for r in $(seq 1 "$ROUNDS"); do
  for which in new old; do
    commit=$([ $which = new ] && echo "$NEW" || echo "$OLD")
    clone=$(mktemp -d /tmp/suite-ab-XXXXXX)
    git clone -q "$REPO" "$clone" && git -C "$clone" checkout -q "$commit"
    ln -s "$REPO/.venv" "$clone/.venv"
    (cd "$clone" && /usr/bin/time -o "$OUT/$which-$r.time" -f "%e s, CPU %U user + %S sys" \
      .venv/bin/python -m pytest --ignore-glob='tests/test_durian*' --ignore=tests/test_ray.py \
      -n 4 --dist loadfile --no-loadscope-reorder -q -p no:cacheprovider > "$OUT/$which-$r.log" 2>&1)
    echo "$which $commit round $r rc=$? $(tail -1 "$OUT/$which-$r.time") load $(cut -d' ' -f1 /proc/loadavg)" \
      | tee -a "$OUT/suite_ab.txt"
    rm -rf "$clone"
  done
done

"""One visitor floods, three others ask once: with the per-visitor limit and without.

    .venv/bin/python bench/bench_fair.py [--rounds 3] [--jobs 200]

Each round starts two hubs in turn (alternating which goes first), the same numpy-only
demo (one worker, one-second jobs for the flood), `--queue-size 32`: one with
`--per-client-queue 4` (the default), the baseline with `--per-client-queue 0`
(Gradio's queue alone). The flood and the three visitors are tests/test_fair.py's
(`flood`): real HTTP clients bound to 127.0.0.2 (the flooder) and 127.0.0.3-5, the
visitors sending once the flooder has first been refused. Prints, per setting and
over the rounds (min-max): the flooder's jobs taken and refused, the visitors served
within 10 s, and their answer times.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(Path(__file__).resolve().parent)]

from common import log  # noqa: E402
from support import running_hub  # noqa: E402
from test_fair import flood, write_demos  # noqa: E402

SETTINGS = {"limit 4": "4", "no limit (baseline)": "0"}


def one_round(demos: Path, limit: str, jobs: int) -> dict:
    with running_hub("--demos-dir", str(demos), "--max-copies", "1", "--per-client-queue", limit) as hub:
        seen = asyncio.run(asyncio.wait_for(flood(hub, "127.0.0.2", ["127.0.0.3", "127.0.0.4", "127.0.0.5"],
                                                  jobs=jobs), 300))
    served = [seconds for ok, seconds, _ in seen["answers"] if ok and seconds < 10]
    return {"taken": len(seen["admitted"]), "refused": len(seen["refused"]), "served": len(served),
            "times": [seconds for _, seconds, _ in seen["answers"]],
            "why": sorted({why[:40] for ok, _, why in seen["answers"] if not ok})}


def spread(values: list[float], fmt: str = ".0f") -> str:
    return f"{min(values):{fmt}}-{max(values):{fmt}}" if values else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=200)
    args = parser.parse_args()
    results: dict[str, list[dict]] = {name: [] for name in SETTINGS}
    with tempfile.TemporaryDirectory(prefix="bench-fair-") as tmp:
        demos = write_demos(Path(tmp) / "fairdemos")
        for r in range(args.rounds):
            order = list(SETTINGS) if r % 2 == 0 else list(reversed(SETTINGS))
            for name in order:
                results[name].append(one_round(demos, SETTINGS[name], args.jobs))
                log(f"round {r + 1} {name}: {results[name][-1]}")
    print(f"{args.jobs} one-second jobs from one client, 3 visitors once each, {args.rounds} rounds:")
    for name, rounds in results.items():
        times = [t for row in rounds for t in row["times"]]
        why = sorted({w for row in rounds for w in row["why"]})
        print(f"  {name:20s} flooder taken {spread([row['taken'] for row in rounds])}, "
              f"refused {spread([row['refused'] for row in rounds])}; visitors served within 10 s "
              f"{spread([row['served'] for row in rounds])} of 3, answered or refused after "
              f"{spread(times, '.2f')} s" + (f"; refusals: {'; '.join(why)}" if why else ""))


if __name__ == "__main__":
    main()

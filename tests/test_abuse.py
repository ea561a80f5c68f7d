"""The fault-and-abuse soak, short: bench/abuse_soak.py for 20 s against the
model-free demos in tests/fixtures/abusedemos (a text demo, a second text demo
and an image demo that decodes with the kit's own `load_image`), 8 clients,
`--max-models 2`, a worker of this hub sent kill -9 or kill -STOP every 6 s,
and the hostile inputs in between. The must-be-0 figures of the long bench must
be 0 here too."""

from __future__ import annotations

import sys

from support import PROJECT_ROOT

sys.path.insert(0, str(PROJECT_ROOT / "bench"))

import abuse_soak  # noqa: E402


def test_faults_and_hostile_inputs_leave_the_hub_serving_small_and_clean(tmp_path):
    settings = abuse_soak.Settings(seconds=20, clients=8, fault_every_s=6, hostile_every_s=0.5,
                                   demos_dir=abuse_soak.ABUSE_DEMOS, cache_dir=tmp_path / "cache",
                                   verbose=False)
    report = abuse_soak.run(settings)
    abuse_soak.print_report(report)  # shown by pytest when the test fails
    assert report.failures() == []
    assert report.hub_restarts == 0 and report.hung == 0 and report.unclear_errors == 0
    assert report.leaked_processes == 0 and report.leaked_temp_files == 0
    assert report.rss_drift_mb <= abuse_soak.RSS_DRIFT_LIMIT_MB
    # The run did what it says: traffic answered, faults sent, hostile inputs of every kind tried.
    assert report.ok >= 50 and report.clear_errors >= 10
    assert sum(1 for f in report.faults if f["signal"]) >= 2
    assert len(report.hostile) >= 12
    assert report.workers_seen >= 3

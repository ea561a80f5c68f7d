"""Durian tab (hub side): framework-free imports, the verdict text and the
untrained banner."""

from __future__ import annotations

import subprocess
import sys

from support import PROJECT_ROOT

from demohub.kit.classify import build_result
from demohub.kit.verdict import PLACEHOLDER_BANNER
from demos.durian.breeds import DESCRIPTIONS, LABELS
from demos.durian.tab import verdict_markdown


def test_demo_package_and_tab_do_not_import_tensorflow():
    code = ("import sys; import demos.durian, demos.durian.tab; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'h5py')); "
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_spec_points_at_worker_modules():
    from demos.durian import SPEC

    assert SPEC.name == "durian" and SPEC.api_name == "durian"
    assert SPEC.runtime == "demos.durian.runtime" and SPEC.tab == "demos.durian.tab"
    assert SPEC.examples and SPEC.examples[0].endswith("durian_1.jpg")


def result(probs, trained=True, details="A line about the breed."):
    return build_result(probs, list(LABELS), 0.5, trained, details=details)


def test_confident_verdict_names_the_breed_with_its_description():
    text = verdict_markdown(result([0.1, 0.1, 0.7, 0.1], details=DESCRIPTIONS["Mao Shan Wang"]))
    assert text.startswith("### Mao Shan Wang (70%)")
    assert DESCRIPTIONS["Mao Shan Wang"] in text and PLACEHOLDER_BANNER not in text


def test_uncertain_verdict_below_threshold():
    r = result([0.3, 0.3, 0.2, 0.2])
    assert r.to_json()["label"] == "uncertain"
    assert verdict_markdown(r).startswith("### Uncertain (best guess D24, 30%)")


def test_untrained_weights_show_the_banner_and_json_flag():
    r = result([0.25, 0.25, 0.25, 0.25], trained=False)
    assert verdict_markdown(r).startswith(PLACEHOLDER_BANNER)
    assert r.to_json()["trained"] is False

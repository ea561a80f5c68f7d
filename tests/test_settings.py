"""Every setting, flag and HUB_* variable alike, refused with one sentence in
argparse's style when it cannot work (issue 33), and the checks that need the
demos or what earlier runs measured. Parse-level and process-free, except a few
real `hub.py` runs that check the exit status, the order of the messages and
that no traceback reaches the operator."""

from __future__ import annotations

import os
import time

import pytest

from demohub.checks import check_budget, check_models
from demohub.config import SETTINGS, load_config
from demohub.loadtimes import LastLoad, Measured, progress_text
from demohub.spec import ModelSource
from support import run_hub

#: (flag, bad value, what the sentence says). Every setting that can be wrong has a row.
BAD = [
    ("--host", "no host!", "not a host"),
    ("--host", "300.1.2.3", "not a host"),
    ("--port", "99999", "99999 is not a port: use 1-65535"),
    ("--port", "-1", "-1 is not a port"),
    ("--port", "http", "not a port number: 'http'"),
    ("--max-models", "0", "0 is too small: the smallest is 1 (a hub with room for no model serves nothing)"),
    ("--max-models", "-1", "-1 is too small"),
    ("--max-models", "abc", "not a whole number: 'abc'"),
    ("--max-models", "2.5", "not a whole number: '2.5'"),
    ("--memory-budget", "abc", "not a size: 'abc' (try 4G or 800M)"),
    ("--memory-budget", "0", "is no room at all"),
    ("--memory-budget", "-3G", "not a size"),
    ("--memory-metric", "vss", "'vss' is not one of pss, uss, rss"),
    ("--eviction", "fifo", "'fifo' is not one of cost, lru"),
    ("--idle-ttl", "-5", "-5 s is too short: the shortest is 0 s (0 keeps models forever)"),
    ("--idle-ttl", "soon", "not a number of seconds: 'soon'"),
    ("--idle-ttl", "nan", "not a number of seconds"),
    ("--capacity-wait", "-1", "too short"),
    ("--capacity-wait", "inf", "not a number of seconds"),
    ("--temp-ttl", "1e20", "1e20 s is more than a year"),
    ("--worker-threads", "-2", "too small"),
    ("--worker-threads", "many", "not a whole number"),
    ("--max-copies", "-1", "too small"),
    ("--queue-size", "0", "the smallest is 1 (a queue of 0 refuses every request)"),
    ("--queue-rest-after", "-1", "too short"),
    ("--backend", "docker", "'docker' is not one of local, ray"),
    ("--start-method", "fork", "'fork' is not one of template, spawn"),
    ("--template-ttl", "-1", "too short"),
    ("--ray-max-replicas", "0", "too small"),
    ("--ray-app-prefix", "my app", "use letters, digits"),
    ("--ray-connect-timeout", "0", "the shortest is 1 s"),
    ("--device", "gpu", "'gpu' is not a device: use auto, cpu, cuda or cuda:N"),
    ("--max-file-size", "big", "not a size: 'big'"),
    ("--max-body", "0", "no room at all"),
    ("--temp-ttl", "0", "the shortest is 1 s"),
    ("--status-every", "0.1", "the shortest is 0.5 s"),
    ("--sessions", "0", "too small"),
    ("--per-client-queue", "-1", "the smallest is 0 (0: no limit)"),
    ("--forwarded-allow-ips", "10.0.0.0/33", "not an address or network: '10.0.0.0/33'"),
    ("--forwarded-allow-ips", "proxy.local", "not an address or network: 'proxy.local'"),
    ("--demos-dir", " ", "an empty path"),
    ("--models-dir", " ", "an empty path"),
    ("--cache-dir", " ", "an empty path"),
]
#: switches take no value on the command line; as variables they are on or off
BAD_SWITCHES = [("HUB_MCP", "maybe"), ("HUB_PREWARM", "2"), ("HUB_API_DOCS", "sure"), ("HUB_RELOAD", "please")]
#: settings that take any text (a demo list, a Ray address checked when connecting)
FREE_TEXT = {"--only", "--ray-address"}


@pytest.fixture
def clean_env(monkeypatch):
    for key in list(os.environ):
        if key.startswith("HUB_") or key == "RAY_ADDRESS":
            monkeypatch.delenv(key)
    return monkeypatch


def refused(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exit_:
        load_config(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


def test_the_table_covers_every_setting():
    covered = {flag for flag, _, _ in BAD} | FREE_TEXT
    switches = {s.env for s in SETTINGS if s.switch}
    assert covered | {s.flag for s in SETTINGS if s.switch} == {s.flag for s in SETTINGS}
    assert switches == {env for env, _ in BAD_SWITCHES}


@pytest.mark.parametrize("flag,value,says", BAD)
def test_a_bad_flag_is_one_sentence_naming_it(clean_env, capsys, flag, value, says):
    line = refused(capsys, [f"{flag}={value}"])
    assert line.startswith(f"hub.py: error: {flag}: "), line
    assert says in line, line


@pytest.mark.parametrize("flag,value,says", [row for row in BAD if row[1].strip()])
def test_a_bad_variable_is_one_sentence_naming_it(clean_env, capsys, flag, value, says):
    env = next(s.env for s in SETTINGS if s.flag == flag)
    clean_env.setenv(env, value)
    line = refused(capsys, [])
    assert line.startswith(f"hub.py: error: {env}: "), line
    assert says in line, line


@pytest.mark.parametrize("env,value", BAD_SWITCHES)
def test_a_switch_variable_is_on_or_off(clean_env, capsys, env, value):
    clean_env.setenv(env, value)
    assert f"{env}: {value!r} is not on or off" in refused(capsys, [])


def test_a_flag_wins_over_its_variable_and_zero_means_what_the_help_says(clean_env):
    clean_env.setenv("HUB_MAX_MODELS", "abc")  # not read: the flag is given
    clean_env.setenv("HUB_MCP", "0")
    config = load_config(["--max-models", "2", "--idle-ttl", "0", "--port", "0", "--worker-threads", "0",
                          "--capacity-wait", "0", "--template-ttl", "0"])
    assert config.limits.max_models == 2 and config.mcp is False
    assert config.limits.idle_ttl_s is None  # 0: models stay loaded
    assert config.port == 0  # 0: the OS picks a free port; the startup line says which
    assert config.limits.worker_threads is None  # 0: the hub shares the cores
    assert config.backend_options["template_ttl_s"] is None  # 0: templates stay
    assert config.limits.capacity_wait_s == 0


@pytest.mark.parametrize("pair,says", [
    ("cassava", "expects NAME=SOURCE"),
    ("=org/repo@abc", "expects NAME=SOURCE"),
    ("cassava=just-a-name", "neither an existing folder nor a Hub repo id"),
    ("cassava=/nonexistent/folder", "no such folder /nonexistent/folder"),
])
def test_model_overrides_are_checked_at_start(clean_env, capsys, pair, says):
    line = refused(capsys, ["--model", pair])
    assert line.startswith("hub.py: error: --model") and says in line, line


def test_a_local_model_folder_needs_config_json(clean_env, capsys, tmp_path):
    line = refused(capsys, ["--model", f"cassava={tmp_path}"])
    assert f"{tmp_path} has no config.json" in line
    clean_env.setenv("HUB_MODEL_CASSAVA", str(tmp_path / "gone"))
    assert refused(capsys, []).startswith(f"hub.py: error: HUB_MODEL_CASSAVA={tmp_path / 'gone'}: no such folder")


@pytest.mark.parametrize("backend,method,expect,notice", [
    ("local", None, "template", False),
    ("local", "spawn", "spawn", False),
    ("ray", None, "ray", False),
    # what --backend used to take keeps its plain meaning, with a notice
    ("spawn", None, "spawn", True),
    ("template", None, "template", True),
    ("spawn", "spawn", "spawn", True),
])
def test_backend_names_where_models_run_and_start_method_how(clean_env, backend, method, expect, notice):
    argv = ["--backend", backend] + (["--start-method", method] if method else [])
    config = load_config(argv)
    assert config.backend == expect
    assert bool(config.notices) == notice
    if notice:
        assert f"--backend {backend} (or HUB_BACKEND={backend}) now reads --backend local" in config.notices[0]


def test_hub_backend_spawn_in_the_environment_gives_spawned_workers(clean_env, capsys):
    """It used to give templates unless HUB_START_METHOD=spawn was set too (issue 29)."""
    clean_env.setenv("HUB_BACKEND", "spawn")
    assert load_config([]).backend == "spawn"
    clean_env.setenv("HUB_START_METHOD", "template")
    assert "--backend spawn contradicts --start-method template" in refused(capsys, [])


def test_a_per_demo_device_is_checked_and_an_unknown_variable_named(clean_env, capsys):
    clean_env.setenv("HUB_DEVICE_DURIAN", "gpu")
    assert refused(capsys, []) == "hub.py: error: HUB_DEVICE_DURIAN: 'gpu' is not a device: use auto, cpu, cuda or cuda:N"
    clean_env.setenv("HUB_DEVICE_DURIAN", "cpu")
    clean_env.setenv("HUB_MAX_MODEL", "2")  # a typo: it would be ignored without a word
    assert load_config([]).notices == (
        "HUB_MAX_MODEL is not a setting and is ignored (did you mean HUB_MAX_MODELS?); "
        "python hub.py --help lists them",)


@pytest.mark.parametrize("argv,env,notices", [
    (["--prewarm", "--start-method", "spawn"], {}, ["--prewarm has no effect without --start-method template"]),
    (["--template-ttl", "60", "--backend", "ray"], {},
     ["--template-ttl has no effect without --start-method template"]),
    (["--max-copies", "2", "--backend", "ray"], {"HUB_RAY_MAX_REPLICAS": "2"},
     ["--max-copies has no effect without --backend local (Ray has --ray-max-replicas)"]),
    ([], {"HUB_RAY_MAX_REPLICAS": "3"}, ["--ray-max-replicas has no effect without --backend ray"]),
    (["--prewarm", "--max-copies", "2"], {}, []),  # templates read both
])
def test_a_setting_the_backend_does_not_read_is_named(clean_env, argv, env, notices):
    for key, value in env.items():
        clean_env.setenv(key, value)
    assert list(load_config(argv).notices) == notices


# -- checks that need the demos or the last run's measurements -------------------------------

def test_model_names_are_checked_against_the_demos():
    errors, warnings = check_models(
        ["cassava", "durian"],
        {"nosuch": ModelSource("org/x", "abc"), "cassava": ModelSource("org/cassava"),
         "durian": ModelSource("org/durian", "0123abc")},
        {"nosuch": "--model nosuch=org/x@abc", "cassava": "HUB_MODEL_CASSAVA=org/cassava"})
    assert errors == ["--model nosuch=org/x@abc: there is no demo named 'nosuch'; the demos are: cassava, durian"]
    assert len(warnings) == 1 and warnings[0].startswith("HUB_MODEL_CASSAVA=org/cassava: no @revision")


@pytest.mark.parametrize("budget,metric,expect", [
    (None, "pss", None),
    (2**30, "pss", None),
    (300 * 2**20, "pss", "--memory-budget 300 MB is smaller than the durian model's last measured size (410 MB PSS)"),
    (300 * 2**20, "rss", None),  # measured another way: not comparable
])
def test_a_budget_no_model_fits_is_refused_with_the_number(budget, metric, expect):
    last = {"durian": LastLoad(seconds=1.4, memory_bytes=410 * 2**20, memory_metric="pss"),
            "questions": LastLoad(seconds=0.2, memory_bytes=90 * 2**20, memory_metric="pss")}
    problem = check_budget(budget, metric, ["questions", "durian"], last)
    assert (problem is None) if expect is None else problem.startswith(expect), problem


# -- what a visitor is told while a model loads ---------------------------------------------

@pytest.mark.parametrize("elapsed,this_run,remembered,guess,fraction,text", [
    (0.0, None, None, None, None, "loading durian model (first load: no estimate yet)"),
    (0.0, None, None, 15.0, None,
     "loading durian model (first load: no estimate yet, the demo's author guesses ~15 s)"),
    (0.5, None, LastLoad(seconds=2.0), 15.0, 0.25, "loading durian model, ~2 s (its last load took 2.0 s)"),
    (1.0, 4.0, LastLoad(seconds=2.0), 15.0, 0.25, "loading durian model, ~3 s"),  # this run's wins
    (9.0, 4.0, None, None, 0.95, "loading durian model, ~1 s"),  # late: never 0 s or past the end
])
def test_progress_says_what_was_measured(elapsed, this_run, remembered, guess, fraction, text):
    assert progress_text("durian", elapsed, this_run, remembered, guess) == (fraction, text)


def test_measured_loads_survive_a_new_instance_and_garbage(tmp_path):
    first = Measured(tmp_path)
    first.record("durian", 1.234, 400 * 2**20, "pss", download_bytes=80 * 2**20)
    first.record("durian", 1.5, 410 * 2**20, "pss")  # no new download: the last size is kept
    again = Measured(tmp_path).get("durian")
    assert (again.seconds, again.memory_bytes, again.download_bytes) == (1.5, 410 * 2**20, 80 * 2**20)
    assert [p.name for p in tmp_path.iterdir()] == ["measured.json"]  # no scratch file left
    (tmp_path / "measured.json").write_text("{not json")
    assert Measured(tmp_path).all() == {}
    (tmp_path / "measured.json").write_text('{"durian": 5}')
    assert Measured(tmp_path).all() == {}


# -- real hub.py runs -------------------------------------------------------------------------

#: issue 33's table, row by row (the port in use: tests/test_hub_lifecycle.py)
@pytest.mark.parametrize("args,env,says", [
    (["--memory-budget", "abc"], {}, "hub.py: error: --memory-budget: not a size: 'abc' (try 4G or 800M)"),
    ([], {"HUB_MAX_MODELS": "abc"}, "hub.py: error: HUB_MAX_MODELS: not a whole number: 'abc'"),
    (["--max-models", "0"], {}, "hub.py: error: --max-models: 0 is too small: the smallest is 1 "
                                "(a hub with room for no model serves nothing)"),
    (["--max-models", "-1"], {}, "hub.py: error: --max-models: -1 is too small: the smallest is 1 "
                                 "(a hub with room for no model serves nothing)"),
    (["--idle-ttl", "-5"], {}, "hub.py: error: --idle-ttl: -5 s is too short: the shortest is 0 s "
                               "(0 keeps models forever)"),
    (["--model", "nosuch=org/repo@abc", "--port", "0"], {},
     "hub.py: error: --model nosuch=org/repo@abc: there is no demo named 'nosuch'; the demos are: alpha, beta"),
    (["--model", "alpha=/nonexistent"], {}, "hub.py: error: --model alpha=/nonexistent: no such folder "
                                            "/nonexistent; point it at a model folder (config.json + weights)"),
    (["--port", "99999"], {}, "hub.py: error: --port: 99999 is not a port: use 1-65535, or 0 for any free port"),
])
def test_hub_refuses_a_bad_setting_with_exit_2_and_no_traceback(args, env, says):
    started = time.monotonic()
    done = run_hub(*args, env=env)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1] == says
    assert "Traceback" not in done.stderr and "demo hub:" not in done.stderr
    assert time.monotonic() - started < 30


def test_the_tab_says_what_the_last_load_took_before_the_first_visitor_asks():
    from demohub.registry import ModelStats, ModelStatus, State
    from demohub.web.ui import model_line

    waiting = ModelStatus(name="durian", title="Durian", state=State.NOT_LOADED, source="local", placeholder=False,
                          memory_bytes=0, in_flight=0, idle_s=None, error=None, download_fraction=None,
                          stats=ModelStats())
    assert model_line(waiting) == "Model not loaded yet: the first prediction loads it."
    assert model_line(waiting, LastLoad(seconds=1.43)) == (
        "Model not loaded yet: the first prediction loads it (its last load took 1.4 s).")

"""Device selection and GPU memory accounting, on a machine without a GPU.

The selection logic and the accounting arithmetic are pure functions, tested
here with GPU counts and NVML process lists written by hand; the real NVML
calls (`nvml_gpu_count`, `memory.gpu_memory`) only return figures where a GPU,
its driver and pynvml exist, and here they must quietly return 0. Real workers
check that the hub hands each its device."""

from __future__ import annotations

import json
import os

import pytest

from demohub.backends import make_backend
from demohub import device, memory
from demohub.config import load_config
from demohub.device import DeviceError
from demohub.discovery import discover
from demohub.errors import ModelError
from demohub.registry import Limits, Registry, State
from demohub.sources import ModelSources
from test_new_demo import new_package_dir, write_demo


@pytest.mark.parametrize("environ,spec,expected", [
    ({}, "auto", ("auto", "cassava SPEC.device")),
    ({}, "cpu", ("cpu", "cassava SPEC.device")),
    ({"HUB_DEVICE": "cuda"}, "auto", ("cuda", "HUB_DEVICE")),
    ({"HUB_DEVICE": "cuda", "HUB_DEVICE_CASSAVA": "cpu"}, "auto", ("cpu", "HUB_DEVICE_CASSAVA")),
    ({"HUB_DEVICE": " CUDA:1 "}, "cpu", ("cuda:1", "HUB_DEVICE")),
    ({"HUB_DEVICE_DURIAN": "cpu"}, "auto", ("auto", "cassava SPEC.device")),  # another demo's override
    ({"HUB_DEVICE": ""}, "auto", ("auto", "cassava SPEC.device")),  # empty means unset
])
def test_the_most_specific_setting_wins(environ, spec, expected):
    assert device.requested("cassava", spec, environ) == expected


@pytest.mark.parametrize("bad", ["gpu", "cuda:", "cuda:x", "mps", "cpu,cuda"])
def test_a_device_setting_that_means_nothing_is_named(bad):
    with pytest.raises(DeviceError, match="HUB_DEVICE_DURIAN = .*use auto, cpu, cuda or cuda:N"):
        device.requested("durian", "auto", {"HUB_DEVICE_DURIAN": bad})
    with pytest.raises(DeviceError, match="durian SPEC.device"):
        device.requested("durian", bad, {})


@pytest.mark.parametrize("nvml,visible,expected", [
    (0, None, 0), (2, None, 2), (2, "", 0), (2, "-1", 0), (4, "1,3", 2), (1, "0,1,2", 1),
])
def test_visible_gpus_follow_cuda_visible_devices(nvml, visible, expected):
    assert device.visible_gpus(nvml, visible) == expected


@pytest.mark.parametrize("asked,gpus,expected", [
    ("auto", 0, "cpu"), ("auto", 1, "cuda"), ("cpu", 4, "cpu"), ("cuda", 1, "cuda"), ("cuda:1", 2, "cuda:1"),
])
def test_auto_means_cuda_when_there_is_one(asked, gpus, expected):
    assert device.resolve(asked, gpus) == expected


@pytest.mark.parametrize("asked,gpus,message", [
    ("cuda", 0, "no GPU visible"), ("cuda:1", 1, "1 GPU"), ("cuda:0", 0, "no GPU"),
])
def test_a_missing_gpu_is_an_error_not_a_silent_cpu_fallback(asked, gpus, message):
    with pytest.raises(DeviceError, match=message) as caught:
        device.resolve(asked, gpus, "HUB_DEVICE_CASSAVA")
    assert "HUB_DEVICE_CASSAVA" in str(caught.value) and "auto or cpu" in str(caught.value)


def test_for_demo_combines_settings_and_gpu_count():
    assert device.for_demo("cassava", "auto", {}, gpus=2) == "cuda"
    assert device.for_demo("cassava", "auto", {"HUB_DEVICE_CASSAVA": "cpu"}, gpus=2) == "cpu"
    assert device.for_demo("questions", "cpu", {}, gpus=2) == "cpu"


def test_this_machine_has_no_gpu_and_nvml_says_so_quietly():
    assert device.nvml_gpu_count() == 0
    assert device.gpu_count({}) == 0
    assert device.for_demo("cassava", "auto", {}) == "cpu"


def test_a_cpu_worker_gets_its_device_and_no_gpus():
    env = device.worker_env({"PATH": "/bin"}, "cassava", "auto")
    assert env["DEMOHUB_DEVICE"] == "cpu" and env["CUDA_VISIBLE_DEVICES"] == ""
    assert env["PATH"] == "/bin"
    with pytest.raises(ModelError, match="could not be loaded") as caught:
        device.worker_env({}, "cassava", "cuda")
    assert "cassava SPEC.device asks for cuda" in caught.value.detail


def test_inside_a_worker_the_runtime_reads_its_device():
    assert device.device_name({}) == "cpu"  # run outside the hub
    assert device.device_name({"DEMOHUB_DEVICE": "cuda:1"}) == "cuda:1"
    with pytest.raises(DeviceError, match="DEMOHUB_DEVICE"):
        device.device_name({"DEMOHUB_DEVICE": "tpu"})


def test_torch_device_and_the_template_check_create_no_cuda_context(monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setenv("DEMOHUB_DEVICE", "cpu")
    assert device.torch_device() == torch.device("cpu")
    assert not device.cuda_context_created()
    assert device.cuda_context_created() is False
    assert torch.cuda.is_initialized() is False


def test_the_device_flag_is_validated_and_reaches_workers_through_the_environment(monkeypatch, capsys):
    monkeypatch.setenv("HUB_DEVICE", "")  # recorded, so what load_config sets is undone after
    monkeypatch.delenv("HUB_DEVICE")
    with pytest.raises(SystemExit) as exit_:
        load_config(["--device", "gpu"])
    assert exit_.value.code == 2
    assert "hub.py: error: --device: 'gpu' is not a device" in capsys.readouterr().err
    load_config([])
    assert "HUB_DEVICE" not in os.environ  # no flag: each demo's SPEC.device decides
    load_config(["--device", "CPU"])
    assert os.environ["HUB_DEVICE"] == "cpu"


# -- GPU memory accounting ----------------------------------------------------------------

#: (pid, usedGpuMemory) as NVML lists them, over two GPUs; None = withheld by NVML
NVML_PROCESSES = [(101, 3 * 2**30), (102, 512 * 2**20), (101, 2**30), (103, None), (999, 2**20)]


def test_gpu_bytes_are_summed_per_process_over_every_gpu():
    by_pid = memory.gpu_bytes_by_pid(NVML_PROCESSES)
    assert by_pid == {101: 4 * 2**30, 102: 512 * 2**20, 103: 0, 999: 2**20}
    assert memory.gpu_bytes([101], by_pid) == 4 * 2**30
    assert memory.gpu_bytes([101, 102, 101, None], by_pid) == 4 * 2**30 + 512 * 2**20
    assert memory.gpu_bytes([5555], by_pid) == 0
    assert memory.gpu_bytes_by_pid([]) == {}


def test_without_a_gpu_a_worker_costs_its_host_memory_only():
    pid = os.getpid()
    assert memory.gpu_memory(pid) == 0 and memory.gpu_memory(None) == 0
    assert memory._NVML.available is False  # decided once, not retried every sweep
    host = memory.process_memory(pid, "rss")
    assert abs(memory.worker_memory(pid, "rss") - host) < 8 * 2**20
    assert memory.worker_memory(None) == 0


# -- through real workers ---------------------------------------------------------------------

DEVICE_RUNTIME = '''
import os
from demohub.device import device_name


def load(model_dir):
    return {}


def predict(model, request):
    return {"device": device_name(), "visible": os.environ.get("CUDA_VISIBLE_DEVICES")}
'''


@pytest.fixture
def device_demos(tmp_path):
    demos = new_package_dir(tmp_path)
    write_demo(demos, "anywhere", runtime=DEVICE_RUNTIME)
    write_demo(demos, "gpuonly", runtime=DEVICE_RUNTIME, extra='device="cuda",')
    for name in ("anywhere", "gpuonly"):
        (tmp_path / "models" / name).mkdir(parents=True)
        (tmp_path / "models" / name / "config.json").write_text(json.dumps({"trained": True}))
    registries = []

    def build() -> Registry:
        specs = discover(demos)
        registry = Registry(specs, ModelSources(specs, tmp_path / "models", tmp_path / "ph"), Limits(),
                            backend=make_backend("spawn"))
        registries.append(registry)
        return registry

    yield build
    for registry in registries:
        registry.close()


def test_workers_are_told_their_device(device_demos, monkeypatch):
    monkeypatch.setenv("HUB_DEVICE", "")
    registry = device_demos()
    assert registry.predict("anywhere", {}) == {"device": "cpu", "visible": ""}
    with pytest.raises(ModelError, match="could not be loaded"):
        registry.predict("gpuonly", {})
    failed = next(s for s in registry.status() if s.name == "gpuonly")
    assert failed.state == State.FAILED
    assert "gpuonly SPEC.device asks for cuda but this machine has no GPU visible" in failed.error


def test_a_per_demo_override_moves_a_gpu_demo_to_the_cpu(device_demos, monkeypatch):
    monkeypatch.setenv("HUB_DEVICE", "cuda")
    monkeypatch.setenv("HUB_DEVICE_GPUONLY", "cpu")
    registry = device_demos()
    assert registry.predict("gpuonly", {}) == {"device": "cpu", "visible": ""}
    with pytest.raises(ModelError):  # HUB_DEVICE=cuda still applies to the other demo
        registry.predict("anywhere", {})
    assert "HUB_DEVICE asks for cuda" in next(s for s in registry.status() if s.name == "anywhere").error

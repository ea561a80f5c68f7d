"""Which device each demo's worker computes on, decided without touching CUDA.

The hub (and a worker template, which forks children) must never create a
CUDA context: CUDA does not survive fork, and a context holds GPU memory in a
process that serves no model. So the hub counts GPUs through NVML (the driver's
management library, `pynvml` from nvidia-ml-py, when installed), decides each
demo's device, and hands it to the worker as `DEMOHUB_DEVICE`; the runtime reads
it with `torch_device()` (or `device_name()` for other frameworks).

Precedence, most specific first: `HUB_DEVICE_<NAME>` (e.g. HUB_DEVICE_CASSAVA=cpu),
then the hub-wide `HUB_DEVICE` / `--device`, then the demo's `SPEC.device`.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any, Mapping

#: the environment variable the worker reads
WORKER_VAR = "DEMOHUB_DEVICE"
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


class DeviceError(ValueError):
    """A device setting that cannot be honoured; the message says what to change."""


def validate(text: str, setting: str = "device") -> str:
    value = text.strip().lower()
    if not _DEVICE.match(value):
        raise DeviceError(f"{setting} = {text!r}: use auto, cpu, cuda or cuda:N")
    return value


def requested(name: str, spec_device: str, environ: Mapping[str, str]) -> tuple[str, str]:
    """(device asked for, which setting asked): per-demo env, hub-wide, the spec."""
    key = f"HUB_DEVICE_{name.upper()}"
    for setting in (key, "HUB_DEVICE"):
        if environ.get(setting, "").strip():
            return validate(environ[setting], setting), setting
    return validate(spec_device or "auto", f"{name} SPEC.device"), f"{name} SPEC.device"


def visible_gpus(nvml_count: int, cuda_visible: str | None) -> int:
    """GPUs a worker would see: NVML's count, narrowed by CUDA_VISIBLE_DEVICES."""
    if cuda_visible is None:
        return nvml_count
    ids = [d for d in cuda_visible.split(",") if d.strip()]
    if not ids or ids[0].strip() == "-1":
        return 0
    return min(nvml_count, len(ids))


def resolve(asked: str, gpus: int, setting: str = "device") -> str:
    """'auto' -> 'cuda' when a GPU is visible, else 'cpu'; a CUDA device that
    is not there is an error naming the setting, not a silent CPU fallback."""
    if asked == "auto":
        return "cuda" if gpus > 0 else "cpu"
    if asked.startswith("cuda"):
        index = int(asked.partition(":")[2] or 0)
        if index >= gpus:
            have = f"{gpus} GPU(s)" if gpus else "no GPU"
            raise DeviceError(f"{setting} asks for {asked} but this machine has {have} visible; "
                              "set it to auto or cpu")
    return asked


def nvml_gpu_count() -> int:
    """GPUs the driver reports, through NVML (no CUDA context); 0 without
    pynvml or without a driver."""
    try:
        import pynvml
    except ImportError:
        return 0
    try:
        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - NVMLError_LibraryNotFound / DriverNotLoaded on CPU machines
        return 0
    try:
        return int(pynvml.nvmlDeviceGetCount())
    finally:
        pynvml.nvmlShutdown()


def gpu_count(environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    return visible_gpus(nvml_gpu_count(), environ.get("CUDA_VISIBLE_DEVICES"))


def for_demo(name: str, spec_device: str = "auto", environ: Mapping[str, str] | None = None,
             gpus: int | None = None) -> str:
    """The device `name`'s worker should use ('cpu', 'cuda', 'cuda:1')."""
    environ = os.environ if environ is None else environ
    asked, setting = requested(name, spec_device, environ)
    if asked == "cpu":
        return "cpu"
    return resolve(asked, gpu_count(environ) if gpus is None else gpus, setting)


def worker_env(env: Mapping[str, str], name: str, spec_device: str = "auto") -> dict[str, str]:
    """`env` plus the worker's device; a CPU worker also hides the GPUs, so no
    library in it can open a context by accident."""
    try:
        device = for_demo(name, spec_device, env)
    except DeviceError as exc:
        from demohub.errors import ModelError

        raise ModelError(f"The {name} model could not be loaded; the operator can see why on the "
                         "Status tab and in the server log.", detail=str(exc)) from None
    out = dict(env)
    out[WORKER_VAR] = device
    if device == "cpu":
        out["CUDA_VISIBLE_DEVICES"] = ""
    return out


# -- inside a worker -------------------------------------------------------------------


def device_name(environ: Mapping[str, str] | None = None) -> str:
    """The device the hub chose for this worker ('cpu' when run outside the hub)."""
    environ = os.environ if environ is None else environ
    value = environ.get(WORKER_VAR, "").strip().lower()
    return validate(value, WORKER_VAR) if value and value != "auto" else "cpu"


def torch_device() -> Any:
    """`torch.device` for this worker's runtime (imports torch: worker only)."""
    import torch

    return torch.device(device_name())


def cuda_context_created() -> bool:
    """Whether this process has initialised CUDA through torch (checked
    without initialising it)."""
    torch = sys.modules.get("torch")
    return bool(torch is not None and torch.cuda.is_initialized())


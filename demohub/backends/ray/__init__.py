"""The Ray Serve backend (`--backend ray`): each demo is one Serve application.

- `head`: the Ray the hub connects to: a one-node Ray on 127.0.0.1 that the
  hub starts and owns (`LocalRay`, run under the watcher `python -m
  demohub.backends.ray head`, see `__main__`), or a cluster's address,
  checked before connecting (`probe`).
- `replica`: what runs on a Ray worker: `DemoReplica` loads the demo's
  runtime and answers predictions, as a spawn worker does.
- `backend`: the hub side: `RayBackend` deploys, watches and deletes the
  applications; `RayModel` is the registry's handle on one of them.

Imports point one way: backend uses head and replica; head and replica import
neither. Ray itself is imported inside functions, never at module import.
"""

from demohub.backends.ray.backend import (APP_PREFIX, CONNECT_TIMEOUT_S, DEPLOYMENT, DRIVER_ENV, AppView,
                                          RayBackend, RayModel, Replica)
from demohub.backends.ray.head import LOOPBACK_ENV, PROJECT_ROOT, LocalRay, RayUnreachable, is_loopback, probe
from demohub.backends.ray.replica import DemoReplica, node_model_dir

__all__ = [
    "APP_PREFIX", "CONNECT_TIMEOUT_S", "DEPLOYMENT", "DRIVER_ENV", "LOOPBACK_ENV", "PROJECT_ROOT",
    "AppView", "DemoReplica", "LocalRay", "RayBackend", "RayModel", "RayUnreachable", "Replica",
    "is_loopback", "node_model_dir", "probe",
]

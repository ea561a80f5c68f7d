"""deploy/kuberay.yaml, checked without a Kubernetes cluster: the fields the
Ray backend relies on, and the front's settings read by the hub's own parser."""

from __future__ import annotations

import os
from unittest import mock

import pytest
import yaml

from demohub.config import load_config
from support import PROJECT_ROOT

MANIFEST = PROJECT_ROOT / "deploy" / "kuberay.yaml"


@pytest.fixture(scope="module")
def docs() -> dict:
    parsed = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]
    return {d["kind"]: d for d in parsed}


def pinned_ray() -> str:
    for line in (PROJECT_ROOT / "requirements.txt").read_text().splitlines():
        if line.startswith("ray[serve]=="):
            return line.split("==")[1].strip()
    raise AssertionError("ray[serve] is not pinned in requirements.txt")


def env_of(container: dict) -> dict:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def containers(pod_template: dict) -> list[dict]:
    return pod_template["spec"]["containers"]


def test_cluster_runs_the_pinned_ray_with_models_off_the_head(docs):
    cluster = docs["RayCluster"]
    assert cluster["apiVersion"] == "ray.io/v1"
    spec = cluster["spec"]
    assert spec["rayVersion"] == pinned_ray()
    assert spec["enableInTreeAutoscaling"] is True  # replicas that do not fit add nodes
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    # its Ray Client proxy forks per session: gRPC's fork handlers off, as LocalRay's head has them
    (head,) = containers(spec["headGroupSpec"]["template"])
    assert env_of(head)["GRPC_ENABLE_FORK_SUPPORT"] == "0"


def test_worker_cpus_match_the_container_and_memory_is_limited(docs):
    for group in docs["RayCluster"]["spec"]["workerGroupSpecs"]:
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        (container,) = containers(group["template"])
        limits = container["resources"]["limits"]
        assert group["rayStartParams"]["num-cpus"] == str(limits["cpu"])
        assert limits["memory"]  # Ray's `memory` resource comes from this limit


def test_every_pod_shares_image_and_auth_and_nodes_keep_their_own_cache(docs):
    cluster = docs["RayCluster"]["spec"]
    ray_pods = [cluster["headGroupSpec"]["template"]] + [g["template"] for g in cluster["workerGroupSpecs"]]
    front = docs["Deployment"]["spec"]["template"]
    images = {c["image"] for pod in ray_pods + [front] for c in containers(pod)}
    assert len(images) == 1  # code and models/ at the same path on every node
    secrets = set()
    for pod in ray_pods + [front]:
        for container in containers(pod):
            env = env_of(container)
            assert env["RAY_AUTH_MODE"] == "token"
            secrets.add(env["RAY_AUTH_TOKEN"]["secretKeyRef"]["name"])
    assert len(secrets) == 1
    for pod in ray_pods:
        (container,) = containers(pod)
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert env_of(container)["HF_HOME"] in mounts
        volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
        assert "emptyDir" in volumes[mounts[env_of(container)["HF_HOME"]]]


def test_front_is_the_hub_on_the_ray_backend_pointed_at_the_head(docs):
    deployment = docs["Deployment"]
    assert deployment["spec"]["replicas"] == 1
    (container,) = containers(deployment["spec"]["template"])
    env = {k: v for k, v in env_of(container).items() if isinstance(v, str)}
    cluster_name = docs["RayCluster"]["metadata"]["name"]
    assert env["RAY_ADDRESS"] == f"ray://{cluster_name}-head-svc:10001"
    assert container["command"] == ["python", "hub.py"]
    port = int(env["HUB_PORT"])
    assert container["ports"][0]["containerPort"] == port
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    service = docs["Service"]
    assert service["spec"]["selector"] == deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["ports"][0]["targetPort"] == container["ports"][0]["name"]
    # the hub's own parser reads that environment as the Ray backend at that address
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HUB_", "RAY_"))}
    with mock.patch.dict(os.environ, {**clean, **env}, clear=True):
        config = load_config([])
    assert config.backend == "ray" and config.host == "0.0.0.0" and config.port == port
    assert config.backend_options["address"] == env["RAY_ADDRESS"]
    assert config.backend_options["max_replicas"] == int(env["HUB_RAY_MAX_REPLICAS"])
    assert config.backend_options["idle_ttl_s"] == float(env["HUB_IDLE_TTL"])

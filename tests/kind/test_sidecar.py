"""Sidecar mode in a real pod, from the chart's sidecar example: the app calls 127.0.0.1:3001
and gets balanced, failed-over access to another Service."""

from __future__ import annotations

import json
import time

import yaml

from tests.kind.cluster import CHART, Cluster, wait_for
from tests.kind.load import LoadResult, _post_stop, _progress
from tests.kind.workloads import APPS, CONTROL_PORT, WORLD, Backend, echo_container, load_args

EXAMPLE = CHART / "examples" / "sidecar.yaml"


def sidecar_example(cluster: Cluster) -> list[dict[str, object]]:
    """The example as shipped, with only what a user edits changed: the images, the upstream
    Service, and the app (here the echo load client calling the sidecar)."""
    docs = [doc for doc in yaml.safe_load_all(EXAMPLE.read_text()) if doc]
    (deployment,) = [doc for doc in docs if doc["kind"] == "Deployment"]
    spec = deployment["spec"]
    spec["replicas"] = 1
    (sidecar,) = spec["template"]["spec"]["initContainers"]
    assert sidecar["restartPolicy"] == "Always"
    sidecar["image"] = cluster.kubeferry_image
    sidecar["imagePullPolicy"] = "Never"
    assert "--upstream=orders=3001" in sidecar["args"]
    sidecar["args"] = [
        "--upstream=world=3001" if arg == "--upstream=orders=3001" else arg
        for arg in sidecar["args"]
    ]
    app = echo_container(
        cluster.echo_image,
        load_args(url="http://127.0.0.1:3001/api", host="", concurrency=4, duration_seconds=300),
        name="app",
    )
    spec["template"]["spec"]["containers"] = [app]
    return docs


def test_the_app_reaches_every_pod_of_its_upstream_and_survives_losing_one(
    cluster: Cluster, backends: dict[str, Backend], restore_backends: None
) -> None:
    manifest = "\n---\n".join(json.dumps(doc) for doc in sidecar_example(cluster))
    cluster.apply(manifest, APPS)
    try:
        cluster.rollout_status(APPS, "frontend")
        (pod,) = [
            p["metadata"]["name"]
            for p in cluster.pods(APPS, "app=frontend")
            if p["metadata"].get("deletionTimestamp") is None
        ]
        world_pods = cluster.ready_pod_names(APPS, WORLD.selector)
        with cluster.port_forward(APPS, f"pod/{pod}", CONTROL_PORT) as port:
            wait_for(lambda: _progress(port)["requests"] > 100, timeout_seconds=60)
            victim = sorted(world_pods)[0]
            cluster.kubectl("-n", APPS, "delete", "pod", victim, "--wait=true", timeout=120)
            wait_for(
                lambda: len(cluster.ready_pod_names(APPS, WORLD.selector)) == WORLD.replicas,
                timeout_seconds=120,
            )
            time.sleep(5)
            result = LoadResult(**_post_stop(port))
        assert result.failures == 0, result.describe()
        assert result.requests > 500, result.describe()
        # Balanced: every world pod answered, the deleted one and its replacement included.
        assert world_pods <= set(result.answers), result.describe()
        assert len(result.answers) == WORLD.replicas + 1, result.describe()
        logs = cluster.kubectl("-n", APPS, "logs", pod, "-c", "kubeferry", "--tail=200")
        lines = [json.loads(line) for line in logs.splitlines() if line.strip()]
        assert any(line.get("event") == "access" for line in lines)
    finally:
        cluster.kubectl("-n", APPS, "delete", "deployment", "frontend", "--wait=false", check=False)

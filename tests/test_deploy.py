"""The Kubernetes manifests under deploy/: they parse, and what they run matches the real CLI,
the key layout the wire expects and the ports the Service exposes."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from trustfix.cli import app
from trustfix.trainer.wire import ALLOWED, TRAINER_KEY, check_endpoint

yaml = pytest.importorskip("yaml")

MANIFEST = Path(__file__).resolve().parents[1] / "deploy" / "trainer.yaml"


def documents() -> dict[str, dict]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all(MANIFEST.read_text())}


def test_trainer_statefulset_runs_the_real_train_command():
    docs = documents()
    assert set(docs) == {"Service", "StatefulSet"}
    sts = docs["StatefulSet"]
    assert sts["spec"]["replicas"] == 1  # one writer per SQLite store
    pod = sts["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["trustfix", "train"]
    args = dict(a.removeprefix("--").split("=", 1) for a in container["args"])
    train = typer.main.get_command(app).commands["train"]
    known = {opt.removeprefix("--") for p in train.params for opt in p.opts}
    assert set(args) <= known, set(args) - known
    # off loopback, so keys are required, and given
    for endpoint in (args["endpoint"], args["pub"]):
        with pytest.raises(ValueError, match="CURVE"):
            check_endpoint(endpoint, None, "bind")
        check_endpoint(endpoint, Path(args["keys"]), "bind")
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert Path(args["store"]).parent == Path(mounts["data"])
    assert Path(args["checkpoints"]).is_relative_to(mounts["data"])
    assert mounts["keys"] == args["keys"]
    claims = {c["metadata"]["name"] for c in sts["spec"]["volumeClaimTemplates"]}
    assert "data" in claims
    (keys,) = [v for v in pod["volumes"] if v["name"] == "keys"]
    paths = {item["path"] for item in keys["secret"]["items"]}
    assert {f"{TRAINER_KEY}.key", f"{TRAINER_KEY}.key_secret"} <= paths
    assert any(p.startswith(f"{ALLOWED}/") for p in paths)


def test_service_exposes_the_container_ports():
    docs = documents()
    container = docs["StatefulSet"]["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    args = dict(a.removeprefix("--").split("=", 1) for a in container["args"])
    assert ports["events"] == int(args["endpoint"].rsplit(":", 1)[1])
    assert ports["versions"] == int(args["pub"].rsplit(":", 1)[1])
    service = docs["Service"]
    assert service["spec"]["selector"] == docs["StatefulSet"]["spec"]["selector"]["matchLabels"]
    assert {p["targetPort"] for p in service["spec"]["ports"]} == set(ports)


DISTRIBUTED = MANIFEST.with_name("trainer-distributed.yaml")


def test_distributed_statefulset_runs_torchrun_over_its_replicas():
    from torch.distributed.run import parse_args

    docs = list(yaml.safe_load_all(DISTRIBUTED.read_text()))
    (sts,) = [d for d in docs if d["kind"] == "StatefulSet"]
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    assert len(docs) == 3 and len(services) == 2
    spec, name = sts["spec"], sts["metadata"]["name"]
    assert spec["podManagementPolicy"] == "Parallel"  # all workers must meet before any starts
    (container,) = spec["template"]["spec"]["containers"]
    assert container["command"] == ["torchrun"]
    run = parse_args(container["args"])  # torchrun's own parser
    assert run.module and run.training_script == "trustfix.trainer"
    assert int(run.nnodes) == spec["replicas"] and run.nproc_per_node == "1"
    # the node rank is the pod's index, so pod 0 is worker 0 (the daemon)
    env = {e["name"]: e for e in container["env"]}
    assert (
        env["PET_NODE_RANK"]["valueFrom"]["fieldRef"]["fieldPath"]
        == "metadata.labels['apps.kubernetes.io/pod-index']"
    )
    headless = services[spec["serviceName"]]
    assert headless["spec"]["clusterIP"] == "None"
    assert run.master_addr == f"{name}-0.{spec['serviceName']}"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["rendezvous"] == run.master_port
    assert {p["targetPort"] for p in headless["spec"]["ports"]} == {"rendezvous"}
    # what follows `-m trustfix.trainer` is the real train command's options
    args = dict(a.removeprefix("--").split("=", 1) for a in run.training_script_args)
    train = typer.main.get_command(app).commands["train"]
    known = {opt.removeprefix("--") for p in train.params for opt in p.opts}
    assert set(args) <= known, set(args) - known
    assert ports["events"] == int(args["endpoint"].rsplit(":", 1)[1])
    assert ports["versions"] == int(args["pub"].rsplit(":", 1)[1])
    (public,) = [s for s in services.values() if s is not headless]
    assert {p["targetPort"] for p in public["spec"]["ports"]} == {"events", "versions"}
    assert public["spec"]["selector"] == {
        **spec["selector"]["matchLabels"],
        "statefulset.kubernetes.io/pod-name": f"{name}-0",
    }
    # each pod's volume holds the store (worker 0) or its shard (beside it), and the checkpoints
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert Path(args["store"]).parent == Path(mounts["data"])
    assert Path(args["checkpoints"]).is_relative_to(mounts["data"])
    assert mounts["keys"] == args["keys"]
    assert {c["metadata"]["name"] for c in spec["volumeClaimTemplates"]} == {"data"}
    volumes = {v["name"] for v in spec["template"]["spec"]["volumes"]}
    assert set(mounts) <= volumes | {"data"}

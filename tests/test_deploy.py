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

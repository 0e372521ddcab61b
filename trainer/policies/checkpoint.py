"""Versioned policy checkpoints: safetensors weights plus a JSON config, verified by sha256.

Version ``v`` in a directory is

- ``policy-v{v}.safetensors``: the state dict (shared tensors such as tied embeddings stored
  once, through :func:`safetensors.torch.save_model`);
- ``policy-v{v}.assets/``: files the policy needs besides its weights (the generative policy's
  tokenizer), absent when there are none;
- ``policy-v{v}.json``: kind, config, version, sha256 and size of the weights, sha256 of the
  assets, creation time, the parent (the checkpoint the policy was loaded from or last saved
  as: ``{"version", "sha256", "folder"}``, None for a random start) and free-form metadata
  (e.g. how a pretrained checkpoint was made).  It is written last (atomically), so a version
  exists once its JSON does.

Loading verifies the hashes before any tensor is read, and reads tensors with safetensors only
(never pickle).  A loaded or saved policy remembers where it came from (``policy.origin``), so
every checkpoint records its parent without its caller's help.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors.torch import load_model, save_model

from .base import Policy
from .generative import GenerativePolicy
from .ranker import RankerPolicy

POLICY_KINDS: dict[str, type[Policy]] = {"ranker": RankerPolicy, "generative": GenerativePolicy}
"""Policy classes by ``kind``: how a checkpoint's JSON is turned back into a policy."""

_VERSION = re.compile(r"^policy-v(\d+)\.json$")


class CheckpointError(ValueError):
    """A checkpoint is missing, incomplete or does not match its recorded hashes."""


@dataclass(frozen=True)
class CheckpointInfo:
    """One saved policy version."""

    version: int
    path: Path
    """The weights file (``policy-v{version}.safetensors``)."""
    sha256: str
    """Hex sha256 of the weights file."""
    size: int
    """Size of the weights file in bytes."""


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def folder_sha256(folder: Path) -> str:
    """Hex sha256 over the relative names and contents of every file under ``folder``."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        digest.update(file_sha256(path).encode())
    return digest.hexdigest()


def _paths(directory: Path, version: int) -> tuple[Path, Path, Path]:
    """Weights, JSON and assets paths of one version."""
    stem = directory / f"policy-v{version}"
    return stem.with_suffix(".safetensors"), stem.with_suffix(".json"), stem.with_suffix(".assets")


def origin_of(policy: Policy) -> dict[str, Any] | None:
    """The checkpoint ``policy`` was loaded from or last saved as (None: a random start)."""
    return getattr(policy, "origin", None)


def save_checkpoint(
    policy: Policy,
    directory: str | os.PathLike[str],
    version: int,
    metadata: dict[str, Any] | None = None,
) -> CheckpointInfo:
    """Write version ``version`` of ``policy`` into ``directory`` (created if needed), recording
    its parent (:func:`origin_of`) and ``metadata``; the policy's origin becomes this version."""
    if policy.kind not in POLICY_KINDS:
        raise CheckpointError(f"unknown policy kind {policy.kind!r}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights, meta, assets = _paths(directory, version)
    tmp = weights.with_suffix(".safetensors.tmp")
    save_model(policy, str(tmp), metadata={"kind": policy.kind, "version": str(version)})
    os.replace(tmp, weights)
    assets_sha = None
    if isinstance(policy, GenerativePolicy):
        assets.mkdir(exist_ok=True)
        policy.save_assets(assets)
        assets_sha = folder_sha256(assets)
    info = CheckpointInfo(version, weights, file_sha256(weights), weights.stat().st_size)
    record = {
        "kind": policy.kind,
        "config": policy.get_config(),
        "version": version,
        "weights": weights.name,
        "sha256": info.sha256,
        "size": info.size,
        "assets": assets.name if assets_sha else None,
        "assets_sha256": assets_sha,
        "created": time.time(),
        "parent": origin_of(policy),
        "metadata": metadata or {},
    }
    tmp_meta = meta.with_suffix(".json.tmp")
    tmp_meta.write_text(json.dumps(record, indent=2, sort_keys=True))
    os.replace(tmp_meta, meta)
    policy.origin = {"version": version, "sha256": info.sha256, "folder": directory.name}
    return info


def latest_version(directory: str | os.PathLike[str]) -> int | None:
    """Highest complete version in ``directory`` (one whose JSON exists); None if there is none."""
    directory = Path(directory)
    if not directory.is_dir():
        return None
    versions = [int(m.group(1)) for p in directory.iterdir() if (m := _VERSION.match(p.name))]
    return max(versions, default=None)


def _locate(path_or_dir: Path, version: int | None) -> tuple[Path, int]:
    """Directory and version named by a directory (+ version) or by a version's JSON/weights."""
    if path_or_dir.is_dir():
        found = latest_version(path_or_dir) if version is None else version
        if found is None:
            raise CheckpointError(f"no checkpoint in {path_or_dir}")
        return path_or_dir, found
    match = re.match(r"^policy-v(\d+)\.(json|safetensors)$", path_or_dir.name)
    if not match:
        raise CheckpointError(f"not a checkpoint: {path_or_dir}")
    return path_or_dir.parent, int(match.group(1))


def load_checkpoint(
    path_or_dir: str | os.PathLike[str],
    version: int | None = None,
    expected_sha256: str | None = None,
) -> tuple[Policy, CheckpointInfo]:
    """Load a version (default: the latest) after checking its hashes; the policy is in eval mode.

    ``expected_sha256`` (e.g. from a version announcement) must match the weights when given.
    """
    directory, version = _locate(Path(path_or_dir), version)
    weights, meta, assets = _paths(directory, version)
    if not meta.is_file() or not weights.is_file():
        raise CheckpointError(f"checkpoint v{version} in {directory} is incomplete")
    record = json.loads(meta.read_text())
    sha = file_sha256(weights)
    for label, want in (("recorded", record["sha256"]), ("expected", expected_sha256)):
        if want is not None and sha != want:
            raise CheckpointError(
                f"sha256 mismatch for {weights}: {label} {want}, file has {sha}; "
                "the weights were modified or truncated"
            )
    if record["assets_sha256"] is not None and folder_sha256(assets) != record["assets_sha256"]:
        raise CheckpointError(f"sha256 mismatch for {assets}: the assets were modified")
    kind = record["kind"]
    if kind not in POLICY_KINDS:
        raise CheckpointError(f"unknown policy kind {kind!r} in {meta}")
    policy = POLICY_KINDS[kind].from_config(
        record["config"], assets if record["assets_sha256"] is not None else None
    )
    load_model(policy, str(weights), strict=True)
    policy.eval()
    policy.origin = {"version": version, "sha256": sha, "folder": directory.name}
    return policy, CheckpointInfo(version, weights, sha, weights.stat().st_size)


def read_record(path_or_dir: str | os.PathLike[str], version: int | None = None) -> dict[str, Any]:
    """The JSON record of a version (default: the latest), without loading or checking weights."""
    directory, version = _locate(Path(path_or_dir), version)
    meta = _paths(directory, version)[1]
    if not meta.is_file():
        raise CheckpointError(f"checkpoint v{version} in {directory} is incomplete")
    return json.loads(meta.read_text())

"""The checkpoint format: one ``torch.save`` file of plain values and tensors.

Contents (format 1): the state dict and its checksum, the model's name and hyper-parameters,
the label vocabularies, the CropSpec, a version, the intended use, a description of the
training data and its metrics. The SHA-256 of the file is the checkpoint's identity (results
record it). Loading uses ``torch.load(weights_only=True)``, which unpickles nothing but plain
types and tensors; a file that is missing, truncated, corrupt, of another format or
incompatible with this code is refused with a ``CheckpointError`` that says which.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from model.crop_spec import CropSpec
from model.factory import MODEL_NAMES, create_model, model_config
from model.pathology import INVASIVENESS, PATTERNS

FORMAT = "lungpath-checkpoint"
FORMAT_VERSION = 1
_REQUIRED = ("format", "format_version", "model_name", "model_config", "state_dict",
             "state_sha256", "vocabularies", "crop_spec", "version", "intended_use",
             "training_data", "metrics", "created")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used; the message says what is wrong with it."""


class IntendedUse(StrEnum):
    """What a checkpoint may be used for; the node delivers results of a synthetic-data
    checkpoint only in research mode."""

    RESEARCH_SYNTHETIC = "research-synthetic"  #: trained on the synthetic cohort only
    RESEARCH = "research"  #: trained on real data, for research, not for clinical use


def vocabularies() -> dict[str, list[str]]:
    """The label vocabularies of this code, in logit order."""
    return {"invasiveness": [c.value for c in INVASIVENESS],
            "patterns": [p.value for p in PATTERNS]}


@dataclass(frozen=True)
class Checkpoint:
    """Everything a checkpoint file holds besides its identity.

    Attributes:
        model_name: a name of ``factory.MODEL_NAMES``.
        model_config: the hyper-parameters ``create_model(model_name, **model_config)`` takes.
        state_dict: the network's tensors.
        crop_spec: how the crops it was trained on were made.
        version: the model's version, e.g. "0.1.0".
        intended_use: see ``IntendedUse``.
        training_data: a description of the training data (cohort, size, seed).
        metrics: evaluation figures, name -> value.
        created: ISO 8601 UTC time of creation.
    """

    model_name: str
    model_config: dict[str, Any]
    state_dict: dict[str, Tensor]
    crop_spec: CropSpec
    version: str
    intended_use: IntendedUse
    training_data: str
    metrics: dict[str, float] = field(default_factory=dict)
    created: str = field(
        default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def __post_init__(self) -> None:
        if self.model_name not in MODEL_NAMES:
            raise ValueError(
                f'Argument "model_name" must be one of {", ".join(MODEL_NAMES)}, '
                f"got {self.model_name!r}."
            )
        if not self.version:
            raise ValueError('Argument "version" must not be empty.')
        uses = [u.value for u in IntendedUse]
        if self.intended_use not in uses:
            raise ValueError(
                f'Argument "intended_use" must be one of {", ".join(uses)}, '
                f"got {self.intended_use!r}."
            )
        object.__setattr__(self, "intended_use", IntendedUse(self.intended_use))
        _check_plain("model_config", self.model_config)
        if not all(isinstance(v, int | float) and not isinstance(v, bool)
                   for v in self.metrics.values()):
            raise ValueError('Argument "metrics" must map names to numbers.')

    @classmethod
    def of(cls, model: nn.Module, name: str, **fields: Any) -> Checkpoint:
        """A checkpoint of ``model``, built by ``create_model(name, ...)``: its hyper-parameters
        and its tensors (copied to the CPU); ``fields`` are the other attributes."""
        state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        return cls(model_name=name, model_config=model_config(model), state_dict=state,
                   **fields)

    def to_payload(self) -> dict[str, Any]:
        """The dict written to the file: plain types and tensors only."""
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model_name": self.model_name,
            "model_config": self.model_config,
            "state_dict": self.state_dict,
            "state_sha256": state_sha256(self.state_dict),
            "vocabularies": vocabularies(),
            "crop_spec": self.crop_spec.to_dict(),
            "version": self.version,
            "intended_use": str(self.intended_use),
            "training_data": self.training_data,
            "metrics": {k: float(v) for k, v in self.metrics.items()},
            "created": self.created,
        }

    def build_model(self) -> nn.Module:
        """The network with these weights, in eval mode; an incompatible state dict raises
        ``CheckpointError``."""
        try:
            model = create_model(self.model_name, **self.model_config)
        except (ValueError, TypeError) as exc:
            raise CheckpointError(f"checkpoint's model config is not accepted: {exc}") from exc
        try:
            model.load_state_dict(self.state_dict, strict=True)
        except RuntimeError as exc:
            raise CheckpointError(
                f"checkpoint's weights do not fit model {self.model_name!r}: {exc}"
            ) from exc
        return model.eval()


def state_sha256(state_dict: dict[str, Tensor]) -> str:
    """SHA-256 over the tensors' names, dtypes, shapes and bytes. Stored inside the file, it
    catches damage to the weights that the zip container would not notice."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _check_plain(name: str, value: object) -> None:
    """Refuse anything ``torch.load(weights_only=True)`` could not read back."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f'Argument "{name}" must have string keys, got {key!r}.')
            _check_plain(name, item)
    elif isinstance(value, list | tuple):
        for item in value:
            _check_plain(name, item)
    elif not (value is None or isinstance(value, str | int | float | bool | Tensor)):
        raise ValueError(f'Argument "{name}" must hold plain values, got {type(value).__name__}.')


def save_checkpoint(checkpoint: Checkpoint, path: Path) -> str:
    """Write ``checkpoint`` to ``path`` atomically (temporary file, fsync, rename) and return
    its SHA-256."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(checkpoint.to_payload(), handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return file_sha256(path)


def file_sha256(path: Path) -> str:
    """The hex SHA-256 of a file: a checkpoint's identity."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class LoadedCheckpoint:
    """A checkpoint read from a file, with the file's SHA-256."""

    checkpoint: Checkpoint
    sha256: str
    path: Path


def load_checkpoint(path: Path) -> LoadedCheckpoint:
    """Read and check a checkpoint file; anything unusable raises ``CheckpointError``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist or is not a file")
    sha256 = file_sha256(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, RuntimeError, OSError,
            ValueError, AttributeError, TypeError) as exc:
        raise CheckpointError(
            f"checkpoint {str(path)!r} is truncated, corrupt or not a torch file: {exc}"
        ) from exc
    return LoadedCheckpoint(_from_payload(payload, path), sha256, path)


def _from_payload(payload: object, path: Path) -> Checkpoint:
    where = f"checkpoint {str(path)!r}"
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{where} is not a lungpath checkpoint")
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{where} has format version {payload.get('format_version')!r}; "
            f"this code reads version {FORMAT_VERSION}"
        )
    missing = [key for key in _REQUIRED if key not in payload]
    if missing:
        raise CheckpointError(f"{where} lacks {', '.join(missing)}")
    if payload["vocabularies"] != vocabularies():
        raise CheckpointError(
            f"{where} was trained with labels {payload['vocabularies']}, which differ from "
            f"this code's {vocabularies()}"
        )
    if not isinstance(payload["state_dict"], dict) or not all(
        isinstance(v, Tensor) for v in payload["state_dict"].values()
    ):
        raise CheckpointError(f"{where} has a state dict that is not a dict of tensors")
    if state_sha256(payload["state_dict"]) != payload["state_sha256"]:
        raise CheckpointError(f"{where} is corrupt: its weights do not match their checksum")
    try:
        return Checkpoint(
            model_name=payload["model_name"],
            model_config=dict(payload["model_config"]),
            state_dict=dict(payload["state_dict"]),
            crop_spec=CropSpec.from_dict(payload["crop_spec"]),
            version=str(payload["version"]),
            intended_use=payload["intended_use"],
            training_data=str(payload["training_data"]),
            metrics=dict(payload["metrics"]),
            created=str(payload["created"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{where} has an invalid field: {exc}") from exc

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from model.checkpoint import (
    Checkpoint,
    CheckpointError,
    IntendedUse,
    file_sha256,
    load_checkpoint,
    save_checkpoint,
)
from model.crop_spec import CropSpec
from model.factory import create_model
from tests.model.conftest import TINY


def _checkpoint(name: str = "mdanet") -> Checkpoint:
    model = create_model(name, **TINY)
    return Checkpoint.of(
        model, name, crop_spec=CropSpec(spacing_mm=1.5, size=16), version="0.1.0",
        intended_use=IntendedUse.RESEARCH_SYNTHETIC,
        training_data="synthetic cohort, 64 nodules, seed 1", metrics={"auc_invasiveness": 0.9},
    )


def _saved(tmp_path: Path) -> Path:
    path = tmp_path / "model.pt"
    save_checkpoint(_checkpoint(), path)
    return path


def test_round_trip_is_exact(tmp_path: Path) -> None:
    original = _checkpoint()
    path = tmp_path / "model.pt"
    sha = save_checkpoint(original, path)
    loaded = load_checkpoint(path)
    assert loaded.sha256 == sha == file_sha256(path) and len(sha) == 64
    got = loaded.checkpoint
    assert got.model_name == original.model_name and got.model_config == original.model_config
    assert got.crop_spec == original.crop_spec and got.version == original.version
    assert got.intended_use is IntendedUse.RESEARCH_SYNTHETIC
    assert got.training_data == original.training_data and got.metrics == original.metrics
    assert got.created == original.created
    assert got.state_dict.keys() == original.state_dict.keys()
    for key, tensor in original.state_dict.items():
        assert torch.equal(got.state_dict[key], tensor)
        assert got.state_dict[key].dtype == tensor.dtype
    model = got.build_model()
    x = torch.rand(2, 1, 16, 16, 16)
    reference = create_model("mdanet", **TINY)
    reference.load_state_dict(original.state_dict)
    with torch.no_grad():
        assert torch.equal(model(x).invasiveness, reference.eval()(x).invasiveness)


def test_the_same_checkpoint_saves_to_the_same_identity(tmp_path: Path) -> None:
    checkpoint = _checkpoint()
    assert save_checkpoint(checkpoint, tmp_path / "a.pt") == save_checkpoint(
        checkpoint, tmp_path / "b.pt")
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary files are gone


def _write_payload(path: Path, change: dict[str, Any]) -> Path:
    payload = _checkpoint().to_payload()
    payload.update(change)
    for key in [k for k, v in change.items() if v is None]:
        del payload[key]
    torch.save(payload, path)
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "something-else"}, "not a lungpath checkpoint"),
        ({"format_version": 2}, "format version 2"),
        ({"vocabularies": {"invasiveness": ["AIS", "IAC"], "patterns": []}}, "labels"),
        ({"model_name": "resnet"}, "invalid field"),
        ({"intended_use": "clinical"}, "invalid field"),
        ({"crop_spec": {"spacing_mm": 1.0}}, "invalid field"),
        ({"metrics": None}, "lacks metrics"),
        ({"state_sha256": "0" * 64}, "corrupt"),
        ({"state_dict": [1, 2]}, "state dict"),
    ],
)
def test_incompatible_checkpoints_are_refused(tmp_path: Path, change: dict[str, Any],
                                              message: str) -> None:
    path = _write_payload(tmp_path / "bad.pt", change)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_weights_of_another_config_are_refused_when_building(tmp_path: Path) -> None:
    path = _write_payload(tmp_path / "other.pt", {"model_config": {**TINY, "growth": 6}})
    with pytest.raises(CheckpointError, match="do not fit model 'mdanet'"):
        load_checkpoint(path).checkpoint.build_model()
    path = _write_payload(tmp_path / "bad-config.pt", {"model_config": {"growht": 6}})
    with pytest.raises(CheckpointError, match="model config is not accepted"):
        load_checkpoint(path).checkpoint.build_model()


def test_truncated_and_garbage_files_are_refused(tmp_path: Path) -> None:
    data = _saved(tmp_path).read_bytes()
    for name, content in [("truncated.pt", data[: len(data) // 2]), ("empty.pt", b""),
                          ("text.pt", b"not a checkpoint\n")]:
        (tmp_path / name).write_bytes(content)
        with pytest.raises(CheckpointError, match="truncated, corrupt or not a torch file"):
            load_checkpoint(tmp_path / name)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_damaged_weights_are_caught_by_the_checksum(tmp_path: Path) -> None:
    checkpoint = _checkpoint()
    path = tmp_path / "model.pt"
    save_checkpoint(checkpoint, path)
    data = bytearray(path.read_bytes())
    # flip a byte inside the largest stored tensor (the zip stores tensors uncompressed)
    tensor = max(checkpoint.state_dict.values(), key=lambda t: t.numel())
    start = bytes(data).find(tensor.numpy().tobytes()[:64])
    assert start > 0
    data[start + 8] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="do not match their checksum"):
        load_checkpoint(path)


class _Evil:
    def __reduce__(self) -> tuple[Any, ...]:
        return (print, ("executed",))


def test_a_file_with_arbitrary_objects_is_refused_without_running_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"format": "lungpath-checkpoint", "payload": _Evil()}, path)
    with pytest.raises(CheckpointError, match="truncated, corrupt or not a torch file"):
        load_checkpoint(path)
    assert "executed" not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("fields", "argument"),
    [
        ({"model_name": "vgg"}, "model_name"),
        ({"version": ""}, "version"),
        ({"metrics": {"auc": "high"}}, "metrics"),
        ({"intended_use": "clinical"}, "intended_use"),
        ({"model_config": {"growth": object()}}, "model_config"),
    ],
)
def test_bad_checkpoint_fields_are_refused(fields: dict[str, Any], argument: str) -> None:
    base = _checkpoint()
    values = {"model_name": base.model_name, "model_config": base.model_config,
              "state_dict": base.state_dict, "crop_spec": base.crop_spec, "version": "1",
              "intended_use": base.intended_use, "training_data": "x", **fields}
    with pytest.raises(ValueError, match=argument):
        Checkpoint(**values)

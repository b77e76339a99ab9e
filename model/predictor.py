"""``Predictor``: a checkpoint's network serving batches of crops.

    predictor = Predictor.from_checkpoint(path, device="auto")
    findings = predictor.predict(crops)   # (N, size, size, size) float32 in [0, 1]

Each crop is run under the flips of ``uncertainty.FLIPS``; the views' softmax outputs are
averaged into the three class probabilities and the seven proportions (rounded to 5 % steps),
and the uncertainty is the normalised entropy of the averaged class probabilities. On a GPU the
network runs under float16 autocast; on a CPU in float32, and the same crops give the same
results on every call. All under ``torch.inference_mode``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from model.checkpoint import CheckpointError, IntendedUse, load_checkpoint
from model.crop_spec import CropSpec
from model.pathology import NodulePrediction, round_proportions
from model.uncertainty import FLIPS, flip_views, normalised_entropy


def resolve_device(device: str) -> torch.device:
    """"auto" -> the first CUDA device if there is one, else the CPU; "cpu", "cuda",
    "cuda:N" as given (a CUDA device that is not there raises ``ValueError``)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f'Argument "device" must be auto, cpu, cuda or cuda:N: {exc}') from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f'Argument "device" is {device!r} but this machine has no CUDA device.')
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f'Argument "device" must be auto, cpu, cuda or cuda:N, got {device!r}.')
    return resolved


class Predictor:
    """Runs a two-task network on crops made with ``crop_spec``.

    Attributes:
        crop_spec: the preprocessing the crops must follow (the checkpoint's).
        sha256: the checkpoint file's SHA-256, the model's identity in results.
        version: the checkpoint's model version.
        intended_use: the checkpoint's intended use.
        device: where the network runs.
    """

    def __init__(self, model: nn.Module, crop_spec: CropSpec, *, sha256: str, version: str,
                 intended_use: IntendedUse, device: str = "auto", batch_size: int = 16,
                 tta: bool = True) -> None:
        if batch_size < 1:
            raise ValueError(f'Argument "batch_size" must be >= 1, got {batch_size}.')
        missing = _missing_tasks(model)
        if missing:
            raise ValueError(f'Argument "model" must predict both tasks; it lacks {missing}.')
        self.device = resolve_device(device)
        self.model = model.eval().to(self.device)
        self.crop_spec = crop_spec
        self.sha256 = sha256
        self.version = version
        self.intended_use = intended_use
        self.batch_size = batch_size
        self.flips = FLIPS if tta else ((),)

    @classmethod
    def from_checkpoint(cls, path: Path | str, device: str = "auto", batch_size: int = 16,
                        tta: bool = True) -> Predictor:
        """Load a checkpoint (``CheckpointError`` if unusable) and serve it on ``device``."""
        loaded = load_checkpoint(Path(path))
        checkpoint = loaded.checkpoint
        model = checkpoint.build_model()
        missing = _missing_tasks(model)
        if missing:
            raise CheckpointError(
                f"checkpoint {str(path)!r} holds {checkpoint.model_name!r}, which lacks "
                f"{missing}: the Predictor needs a network of both tasks"
            )
        return cls(model, checkpoint.crop_spec, sha256=loaded.sha256,
                   version=checkpoint.version, intended_use=checkpoint.intended_use,
                   device=device, batch_size=batch_size, tta=tta)

    def predict(self, crops: np.ndarray | Tensor) -> list[NodulePrediction]:
        """One finding per crop, in order; bad input raises ``ValueError`` before any work."""
        batch = self._validated(crops)
        results: list[NodulePrediction] = []
        with torch.inference_mode():
            for start in range(0, batch.shape[0], self.batch_size):
                chunk = batch[start:start + self.batch_size].to(self.device)
                results += self._predict_chunk(chunk.unsqueeze(1))
        return results

    def _validated(self, crops: np.ndarray | Tensor) -> Tensor:
        size = self.crop_spec.size
        if not isinstance(crops, np.ndarray | Tensor):
            raise ValueError(
                f'Argument "crops" must be a numpy array or a tensor, got {type(crops).__name__}.'
            )
        batch = torch.as_tensor(crops)
        if batch.dim() != 4 or tuple(batch.shape[1:]) != (size, size, size):
            raise ValueError(
                f'Argument "crops" must be shaped (N, {size}, {size}, {size}) for this '
                f"checkpoint's CropSpec, got {tuple(batch.shape)}."
            )
        if not batch.is_floating_point():
            raise ValueError(f'Argument "crops" must be floating point, got {batch.dtype}.')
        batch = batch.detach().to("cpu", torch.float32)
        if batch.numel() and (not bool(torch.isfinite(batch).all())
                              or batch.min() < 0 or batch.max() > 1):
            raise ValueError('Argument "crops" must hold finite values in [0, 1].')
        return batch.contiguous()

    def _predict_chunk(self, chunk: Tensor) -> list[NodulePrediction]:
        n = chunk.shape[0]
        views = flip_views(chunk, self.flips)
        with torch.autocast("cuda", dtype=torch.float16, enabled=self.device.type == "cuda"):
            output = self.model(views)
        assert output.invasiveness is not None and output.growth is not None
        probabilities = _view_mean(output.invasiveness, len(self.flips), n)
        proportions = _view_mean(output.growth, len(self.flips), n)
        uncertainty = normalised_entropy(probabilities)
        return [
            NodulePrediction(
                probabilities=_as_probabilities(probabilities[i]),
                proportions=tuple(round_proportions(proportions[i].tolist())),
                uncertainty=float(uncertainty[i]),
            )
            for i in range(n)
        ]


def _missing_tasks(model: nn.Module) -> str:
    """The tasks of the two that ``model`` does not predict, comma-separated ("" if none)."""
    return ", ".join(sorted({"invasiveness", "growth"} - set(getattr(model, "tasks", ()))))


def _view_mean(logits: Tensor, views: int, n: int) -> Tensor:
    """Softmax per view (in float64), averaged over the views: (views * n, C) -> (n, C)."""
    return logits.double().softmax(dim=1).reshape(views, n, -1).mean(dim=0).cpu()


def _as_probabilities(row: Tensor) -> tuple[float, float, float]:
    values = row / row.sum()
    return (float(values[0]), float(values[1]), float(values[2]))

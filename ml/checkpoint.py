"""Checkpoints as plain dicts that load with ``torch.load(..., weights_only=True)``."""

import dataclasses
import hashlib
import io
import os
import subprocess
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ml import CLASS_CODES
from ml.gate import Gate, GateConfig, LoadedGate
from ml.model import ARCHITECTURES
from ml.preprocessing import PreprocessConfig

FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unknown format, unknown architecture or wrong classes."""


@dataclasses.dataclass
class LoadedModel:
    """A model rebuilt from a checkpoint, in eval mode, with what it was saved with.

    ``sha256`` is the hash of the very bytes the model was loaded from.
    """

    model: nn.Module
    preprocess: PreprocessConfig
    temperature: float
    meta: dict[str, Any]
    sha256: str = ""
    gate: LoadedGate | None = None  # the out-of-distribution gate fitted for this model (ml.fit_gate)


def plain_config(config: Any) -> dict[str, Any]:
    """A frozen dataclass as the plain dict a checkpoint stores."""
    # Tuples become lists: the checkpoint holds only types the safe unpickler accepts.
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}


def git_commit() -> str:
    """The current commit of the working tree, or "unknown" outside a git checkout."""
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return result.stdout.strip()


def save_checkpoint(
    path: Path,
    *,
    model: nn.Module,
    preprocess: PreprocessConfig,
    temperature: float = 1.0,
    training: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
) -> None:
    """Write the unwrapped model and everything needed to rebuild and use it."""
    model = getattr(model, "module", model)  # drop a DistributedDataParallel wrapper
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = {
        "format_version": FORMAT_VERSION,
        "arch": type(model).__name__,
        "model_config": plain_config(model.config),
        "class_codes": list(CLASS_CODES),
        "preprocessing": plain_config(preprocess),
        "temperature": float(temperature),
        "training": training or {},
        "data": data or {},
        "metrics": metrics or {},
        "git_commit": git_commit(),
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
    }
    atomic_save(checkpoint, path)


def save_half_precision(path: Path, out: Path) -> None:
    """Copy the checkpoint at ``path`` to ``out`` with its weights in half precision (half the file).

    It loads as before (the weights become float32 again); score the copy, not the original: the
    rounding moves its logits a little.
    """
    checkpoint = torch.load(Path(path), map_location="cpu", weights_only=True)
    checkpoint["state_dict"] = {k: _stored(v) for k, v in checkpoint["state_dict"].items()}
    atomic_save(checkpoint, Path(out))


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename: a reader never sees half a file,
    and an interrupted write leaves the old file whole."""
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    torch.save(obj, partial)
    os.replace(partial, path)


def load_checkpoint(path: Path) -> LoadedModel:
    """Rebuild the model of a checkpoint on the CPU, in eval mode; raise :class:`CheckpointError`."""
    data = Path(path).read_bytes()  # FileNotFoundError passes through
    try:
        checkpoint = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as error:  # the unpickler raises many types for a file that is not a checkpoint
        raise CheckpointError(f"{str(path)!r} is not a readable checkpoint: {error}") from None
    version = checkpoint.get("format_version") if isinstance(checkpoint, dict) else None
    if version != FORMAT_VERSION:
        raise CheckpointError(f"unsupported checkpoint format {version!r} in {str(path)!r}; expected {FORMAT_VERSION}")
    try:
        return dataclasses.replace(_rebuild(checkpoint), sha256=hashlib.sha256(data).hexdigest())
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError) as error:  # missing keys, bad config, wrong shapes
        raise CheckpointError(f"{str(path)!r} does not describe a usable model: {error!r}") from None


def _with_tuples(plain: dict[str, Any]) -> dict[str, Any]:
    """A dataclass's stored fields as its constructor takes them: lists back to tuples."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in plain.items()}


def _rebuild(checkpoint: dict[str, Any]) -> LoadedModel:
    arch = checkpoint["arch"]
    if arch not in ARCHITECTURES:
        raise CheckpointError(f"unknown architecture {arch!r}; expected one of {sorted(ARCHITECTURES)}")
    if tuple(checkpoint["class_codes"]) != CLASS_CODES:
        raise CheckpointError(f"checkpoint classes {checkpoint['class_codes']} differ from {list(CLASS_CODES)}")
    model_class, config_class = ARCHITECTURES[arch]
    model = model_class(config_class(**_with_tuples(checkpoint["model_config"])))
    model.load_state_dict(checkpoint["state_dict"])
    # Channels-last weights match the channels-last inputs of ml.inference: no layout conversion per call.
    model.to(memory_format=torch.channels_last).eval()
    preprocess = PreprocessConfig(**_with_tuples(checkpoint["preprocessing"]))
    meta = {k: v for k, v in checkpoint.items() if k not in ("state_dict", "gate")}
    gate = None
    if checkpoint.get("gate"):
        saved = checkpoint["gate"]
        gate = Gate(GateConfig(**_with_tuples(saved["config"])))
        gate.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in saved["state_dict"].items()})
        gate = LoadedGate(gate=gate.eval(), threshold=float(saved["threshold"]), report=saved["report"])
    return LoadedModel(
        model=model, preprocess=preprocess, temperature=float(checkpoint["temperature"]), meta=meta, gate=gate
    )


def record_evaluation(path: Path, *, key: str, report: dict[str, Any]) -> None:
    """Store an evaluation summary under ``metrics["evaluation"][key]`` of an existing checkpoint."""
    _update(path, lambda checkpoint: checkpoint["metrics"].setdefault("evaluation", {}).__setitem__(key, report))


def record_triage(path: Path, *, triage: dict[str, Any]) -> None:
    """Store the triage policy (``ml.triage``) and what it measured under ``metrics["triage"]``."""
    _update(path, lambda checkpoint: checkpoint["metrics"].__setitem__("triage", triage))


def record_fullres(path: Path, *, report: dict[str, Any]) -> None:
    """Store a full-resolution report (``ml.fullres``) under ``metrics["fullres"]``: the folder's name, not its path."""
    summary = {**report, "data": Path(report["data"]).name}
    summary.pop("checkpoint", None)
    _update(path, lambda checkpoint: checkpoint["metrics"].__setitem__("fullres", summary))


def record_gate(path: Path, *, gate: Gate, threshold: float, report: dict[str, Any]) -> None:
    """Store the out-of-distribution gate fitted for this checkpoint's model (``ml.fit_gate``)."""
    saved = {
        "config": plain_config(gate.config),
        "threshold": float(threshold),
        "report": report,
        # Half precision keeps the shipped file under 1 MB; ml.fit_gate scores the gate at this precision.
        "state_dict": {k: _stored(v) for k, v in gate.state_dict().items()},
    }
    _update(path, lambda checkpoint: (checkpoint.pop("gate_from", None), checkpoint.__setitem__("gate", saved)))


def record_gate_from(path: Path, *, source: Path) -> None:
    """Serve the checkpoint at ``path`` with the gate fitted for ``source``, a checkpoint in the same folder.

    The gate then reads ``source``'s model (one more forward pass of it per image) instead of a gate
    of its own: for a model whose own gate would refuse lesions the other's answers (the accurate
    model's, ml/MODEL_CARD.md). The reference names the file and the fingerprint of what the gate
    depends on (:func:`gate_fingerprint`), so that a gate fitted again for ``source`` is not served
    unnoticed: :func:`load_lender` refuses the pair. Raises :class:`CheckpointError`.
    """
    path, source = Path(path), Path(source)
    if source.resolve() == path.resolve():
        raise CheckpointError(f"{str(path)!r} cannot lend its gate to itself; --checkpoint names the borrower")
    if source.resolve().parent != path.resolve().parent:
        raise CheckpointError(f"{str(source)!r} must sit beside {str(path)!r}: the reference is a file name")
    borrower = load_checkpoint(path)
    lender = _lendable(source, preprocess=borrower.preprocess)
    reference = {"file": source.name, "fingerprint": gate_fingerprint(lender)}
    _update(path, lambda checkpoint: (checkpoint.pop("gate", None), checkpoint.__setitem__("gate_from", reference)))


def load_lender(path: Path, reference: dict[str, str], *, preprocess: PreprocessConfig) -> LoadedModel:
    """The checkpoint whose gate the checkpoint at ``path`` borrows (its ``gate_from`` ``reference``),
    checked to be the one it was lent by; raise :class:`CheckpointError` otherwise."""
    source = Path(path).resolve().parent / reference["file"]
    if not source.exists():
        raise CheckpointError(f"{str(path)!r} borrows the gate of {reference['file']!r}, which is missing beside it")
    lender = _lendable(source, preprocess=preprocess)
    if gate_fingerprint(lender) != reference["fingerprint"]:
        raise CheckpointError(
            f"{str(path)!r} borrows the gate of {reference['file']!r}, whose model or gate has changed since: "
            "lend it again with python -m ml.fit_gate --gate-of"
        )
    return lender


def _lendable(source: Path, *, preprocess: PreprocessConfig) -> LoadedModel:
    lender = load_checkpoint(source)
    if lender.meta.get("gate_from"):
        raise CheckpointError(f"{str(source)!r} serves a borrowed gate itself; name the checkpoint that owns it")
    if lender.gate is None:
        raise CheckpointError(f"{str(source)!r} has no gate of its own to lend")
    if lender.preprocess != preprocess:
        raise CheckpointError(f"{str(source)!r} prepares images otherwise than the borrower; its gate cannot read them")
    return lender


def gate_fingerprint(loaded: LoadedModel) -> str:
    """sha256 of what a gate's verdicts depend on: the model it reads, the gate and its threshold.

    Not of the whole file: recording an evaluation or a triage policy in the lender changes neither.
    """
    digest = hashlib.sha256(repr(loaded.gate.threshold).encode())
    for prefix, module in (("model.", loaded.model), ("gate.", loaded.gate.gate)):
        for name, tensor in sorted(module.state_dict().items()):
            digest.update((prefix + name).encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _stored(tensor: torch.Tensor) -> torch.Tensor:
    tensor = tensor.detach().cpu().contiguous()
    return tensor.half() if tensor.is_floating_point() else tensor


def _update(path: Path, change) -> None:
    checkpoint = torch.load(Path(path), map_location="cpu", weights_only=True)
    change(checkpoint)
    atomic_save(checkpoint, path)

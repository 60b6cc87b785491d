"""Inference: calibrated probabilities, the gate's verdict and Grad-CAM for images, as the site serves them."""

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ml import CLASS_CODES
from ml.augment import dihedral
from ml.checkpoint import CheckpointError, load_checkpoint, load_lender
from ml.explain import Explanation, explain
from ml.gate import gate_features
from ml.guard import out_of_scope_error, out_of_scope_reason
from ml.model import fold_for_inference, forward_with_features
from ml.preprocessing import PreprocessConfig, Refusal, decode, normalize, prepare, reduce_to_source


@torch.inference_mode()
def predict_logits(
    model: torch.nn.Module,
    pixels: torch.Tensor,
    *,
    preprocess: PreprocessConfig,
    views: int = 1,
    batch_size: int = 256,
) -> torch.Tensor:
    """Logits for an N×3×H×W uint8 batch, the mean over its first ``views`` flips and turns
    (:func:`ml.augment.dihedral`): 1, the images as they are; 8, test-time augmentation."""
    device = next(model.parameters()).device
    outputs = []
    for batch in pixels.split(batch_size):
        x = normalize(batch.to(device), preprocess=preprocess).contiguous(memory_format=torch.channels_last)
        outputs.append(torch.stack([model(v) for v in dihedral(x, views)]).mean(dim=0).float().cpu())
    return torch.cat(outputs) if outputs else torch.empty(0, len(CLASS_CODES))


@dataclass(frozen=True)
class Assessment:
    """What the model says of a batch: calibrated probabilities (N×7, ``CLASS_CODES`` order) and,
    with a gate, each image's gate score and whether it is out of scope (refused)."""

    probabilities: torch.Tensor
    gate_scores: torch.Tensor | None
    out_of_scope: torch.Tensor  # N booleans; all False without a gate


@dataclass(frozen=True)
class Upload:
    """One uploaded image, read once: the model's pixels, its upright size, and the guard's verdict."""

    pixels: torch.Tensor  # 3×size×size uint8, prepared for the model
    size: tuple[int, int]  # (height, width) of the upright image at the training scale, before it was made square
    refusal: Refusal | None  # why the guard refuses it, or None (also when the guard did not run)


class Predictor:
    """A checkpoint loaded once, answering calibrated probabilities in ``CLASS_CODES`` order.

    The out-of-distribution gate stored in the checkpoint (:mod:`ml.gate`) comes with it when present.
    """

    def __init__(self, checkpoint: Path) -> None:
        loaded = load_checkpoint(checkpoint)
        self.model = loaded.model  # the trained layers, for Grad-CAM
        self.inference_model = fold_for_inference(loaded.model)  # the same logits, faster
        self.preprocess = loaded.preprocess
        self.temperature = loaded.temperature
        self.meta = loaded.meta
        self.sha256 = loaded.sha256
        self.parameter_count = sum(p.numel() for p in loaded.model.parameters())
        self.gate = loaded.gate
        self.gate_model = self.inference_model  # the model whose forward pass the gate reads
        self.gate_from = loaded.meta.get("gate_from")  # {"file", "fingerprint"} of a borrowed gate's checkpoint
        if self.gate_from:
            lender = load_lender(checkpoint, self.gate_from, preprocess=self.preprocess)
            self.gate, self.gate_model = lender.gate, fold_for_inference(lender.model)
        owner = self.gate_from["file"] if self.gate_from else str(checkpoint)
        if self.gate is not None and self.gate.gate.config.features != self._feature_count():
            raise CheckpointError(
                f"the gate of {owner!r} reads {self.gate.gate.config.features} features, this code computes "
                f"{self._feature_count()}: fit it again with python -m ml.fit_gate"
            )

    @torch.inference_mode()
    def _feature_count(self) -> int:
        pixels = torch.zeros(1, 3, self.preprocess.size, self.preprocess.size, dtype=torch.uint8)
        logits, blocks = forward_with_features(self.gate_model, normalize(pixels, preprocess=self.preprocess))
        return gate_features(logits, blocks, pixels).shape[1]

    def read(self, data: bytes, *, guard: bool = False) -> torch.Tensor:
        """Read uploaded image bytes into 3×H×W uint8 model pixels (decode, reduce, prepare); raises
        :class:`ml.preprocessing.ImageError`.

        With ``guard``, images that are clearly not lesion photos are refused (``out_of_scope``).
        """
        upload = self.read_upload(data, guard=guard)
        if upload.refusal is not None:
            raise out_of_scope_error(upload.refusal)
        return upload.pixels

    def read_upload(self, data: bytes, *, guard: bool = True) -> Upload:
        """Decode and reduce the bytes once; the guard, the classifier and the gate share the result.

        Raises :class:`ml.preprocessing.ImageError` for bytes that are not a usable image; an image
        that is clearly not a lesion photo is not an error here, but an :class:`Upload` with a
        ``refusal``. Without ``guard`` the guard's statistics are not computed.
        """
        pixels = reduce_to_source(decode(data, preprocess=self.preprocess), preprocess=self.preprocess)
        height, width = pixels.shape[-2:]
        refusal = out_of_scope_reason(pixels) if guard else None
        return Upload(prepare(pixels, preprocess=self.preprocess), (height, width), refusal)

    def explain(self, pixels: torch.Tensor, *, target: int) -> Explanation:
        """Grad-CAM of where prepared ``pixels`` support class ``target``: its overlay (3×H×W uint8)
        and whether its heat lies mostly off the image's centre."""
        inputs = normalize(pixels, preprocess=self.preprocess).unsqueeze(0)
        return explain(self.model, inputs, pixels, target=target)

    def probabilities(self, pixels: torch.Tensor, *, tta: bool = False) -> torch.Tensor:
        """N×7 calibrated probabilities for prepared pixels, in one batched forward pass."""
        logits = predict_logits(self.inference_model, pixels, preprocess=self.preprocess, views=8 if tta else 1)
        return F.softmax(logits / self.temperature, dim=1)

    @torch.inference_mode()
    def assess(self, pixels: torch.Tensor) -> Assessment:
        """Probabilities and the gate's verdict for prepared pixels, from one forward pass (two with a
        borrowed gate: the lender's model is what that gate reads)."""
        x = normalize(pixels, preprocess=self.preprocess).contiguous(memory_format=torch.channels_last)
        logits, blocks = forward_with_features(self.inference_model, x)
        probabilities = F.softmax(logits.float() / self.temperature, dim=1)
        if self.gate is None:
            return Assessment(probabilities, None, torch.zeros(len(pixels), dtype=torch.bool))
        gate_logits = logits
        if self.gate_model is not self.inference_model:
            gate_logits, blocks = forward_with_features(self.gate_model, x)
        scores = self.gate.scores(gate_features(gate_logits, blocks, pixels), x)
        return Assessment(probabilities, scores, scores < self.gate.threshold)

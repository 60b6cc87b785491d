import numpy as np
import pytest
import torch

from ml.data import read_samples
from ml.guard import REASONS, check_in_scope, image_statistics, out_of_scope_reason
from ml.negatives import GRAPHICS, non_lesion_images
from ml.preprocessing import ImageError, decode
from tests.conftest import image_bytes


@pytest.mark.slow  # hundreds of generated images
def test_refuses_at_least_95_percent_of_generated_non_lesion_images():
    results = [
        (kind, out_of_scope_reason(decode(data))) for kind, data in non_lesion_images(per_kind=20, kinds=GRAPHICS)
    ]
    refused = sum(reason is not None for _, reason in results)
    assert refused / len(results) >= 0.95
    for kind in GRAPHICS:  # and every kind is mostly refused, not just on average
        of_kind = [reason for k, reason in results if k == kind]
        assert sum(r is not None for r in of_kind) / len(of_kind) >= 0.9, kind


def test_accepts_the_example_lesions(examples_dir):
    for sample in read_samples(examples_dir):
        assert out_of_scope_reason(decode(sample.path.read_bytes())) is None, sample.image_id


def test_refuses_a_tiny_image():
    assert out_of_scope_reason(decode(image_bytes(size=(40, 30)))) == "too_small"
    assert REASONS["too_small"] == "the image is too small to judge"


def test_check_raises_the_out_of_scope_code():
    _, document = next(non_lesion_images(per_kind=1))
    with pytest.raises(ImageError) as error:
        check_in_scope(decode(document))
    assert error.value.code == "out_of_scope"
    assert error.value.reason in REASONS and REASONS[error.value.reason] in error.value.message


@pytest.mark.parametrize("shape", [(150, 200), (121, 149), (64, 65)])  # at most 150 px: not reduced
def test_the_statistics_are_their_plain_definitions(shape):
    # The guard counts and partitions for speed; its thresholds were set on these definitions.
    rgb = np.random.default_rng(1).integers(0, 256, (*shape, 3), dtype=np.uint8)
    rgb[:40, :40] = (200, 150, 120)  # one colour repeated, so the dominant colour is not a tie
    stats = image_statistics(torch.from_numpy(rgb).permute(2, 0, 1).contiguous())
    values = rgb.astype(np.float32)
    grey = values @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    laplacian = np.abs(4 * grey[1:-1, 1:-1] - grey[:-2, 1:-1] - grey[2:, 1:-1] - grey[1:-1, :-2] - grey[1:-1, 2:])
    _, counts = np.unique((rgb >> 2).reshape(-1, 3), axis=0, return_counts=True)
    assert stats["dominant_colour"] == counts.max() / counts.sum()
    assert stats["colours"] == len(np.unique((rgb >> 3).reshape(-1, 3), axis=0))
    assert stats["texture"] == pytest.approx(float(np.median(laplacian)), rel=1e-6)
    assert stats["smooth_share"] == float(np.mean(laplacian <= 2))

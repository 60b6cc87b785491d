import pytest

from ml.data import read_samples
from ml.guard import REASONS, check_in_scope, out_of_scope_reason
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

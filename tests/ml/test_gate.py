"""The out-of-distribution gate: its features, its fit, its threshold, and the refusal path."""

import csv
import shutil

import pytest
import torch

from ml.checkpoint import load_checkpoint, record_evaluation, record_gate
from ml.data import load_pixels, read_samples
from ml.fit_gate import choose_threshold, extract_features, fit_gate, negative_pixels, read_ood, split_groups
from ml.gate import gate_features
from ml.model import fold_for_inference
from ml.negatives import NOISE, non_lesion_images
from ml.predict import Predictor
from ml.predict import main as predict_main


def test_gate_features_are_block_statistics_and_the_energy():
    logits = torch.tensor([[1.0, 2.0, 3.0]])
    blocks = [torch.arange(8.0).view(1, 2, 2, 2), torch.ones(1, 3, 2, 2)]
    features = gate_features(logits, blocks)
    assert features.shape == (1, 2 * 2 + 2 * 3 + 1)
    assert features[0, :2].tolist() == [1.5, 5.5]  # channel means of the first block
    assert features[0, -1] == pytest.approx(float(torch.logsumexp(logits, dim=1)))


def test_fit_gate_separates_two_clouds_and_the_threshold_keeps_the_refusal_budget():
    torch.manual_seed(0)
    positives, negatives = torch.randn(400, 5) + 3, torch.randn(400, 5) - 3
    gate = fit_gate(positives, negatives, epochs=20)
    held_positive, held_negative = torch.randn(200, 5) + 3, torch.randn(200, 5) - 3
    with torch.no_grad():
        threshold = choose_threshold({"held": gate(held_positive)}, max_refusal=0.02)
        assert float((gate(held_positive) < threshold).float().mean()) <= 0.02
        assert float((gate(held_negative) < threshold).float().mean()) >= 0.95


def _noise_photos(n: int) -> list[bytes]:
    return [data for _, data in non_lesion_images(per_kind=n, seed=5, kinds=NOISE)]


@pytest.fixture(scope="module")
def gated_checkpoint(trained_checkpoint, tmp_path_factory):
    """The tiny checkpoint with a gate fitted on the examples against generated noise."""
    from tests.conftest import EXAMPLES

    path = tmp_path_factory.mktemp("gate") / "gated.pt"
    shutil.copy(trained_checkpoint, path)
    loaded = load_checkpoint(path)
    model = fold_for_inference(loaded.model)
    pixels = load_pixels(read_samples(EXAMPLES), preprocess=loaded.preprocess, progress=False)
    torch.manual_seed(0)
    positives = torch.cat(
        [extract_features(model, pixels, preprocess=loaded.preprocess, augmented=True)] * 1
        + [extract_features(model, pixels, preprocess=loaded.preprocess)]
    )
    noise = negative_pixels(_noise_photos(2), preprocess=loaded.preprocess, views=1, seed=0)
    negatives = extract_features(model, noise, preprocess=loaded.preprocess)
    gate = fit_gate(positives, negatives, epochs=40)
    with torch.no_grad():
        threshold = choose_threshold({"examples": gate(positives)}, max_refusal=0.0)
    record_gate(path, gate=gate, threshold=threshold, report={"rows": []})
    return path


def test_the_predictor_refuses_what_its_gate_refuses(gated_checkpoint, examples_dir):
    # The images the gate was fitted on: served through Predictor.assess, the features must be the
    # same as the fit's, so the lesions pass and the noise is refused.
    predictor = Predictor(gated_checkpoint)
    lesions = torch.stack([predictor.prepare(s.path.read_bytes()) for s in read_samples(examples_dir)])
    noise = torch.stack([predictor.prepare(d) for d in _noise_photos(2)])
    assert not predictor.assess(lesions).out_of_scope.any()
    assessed = predictor.assess(noise)
    assert assessed.out_of_scope.all()
    assert (assessed.gate_scores < predictor.gate.threshold).all()
    # The probabilities are the model's own, gate or not.
    assert torch.allclose(predictor.assess(lesions).probabilities, predictor.probabilities(lesions), atol=1e-5)


def test_the_gate_survives_recording_an_evaluation(gated_checkpoint, tmp_path):
    path = tmp_path / "copy.pt"
    shutil.copy(gated_checkpoint, path)
    before = load_checkpoint(path).gate
    record_evaluation(path, key="validation", report={"n": 1})
    after = load_checkpoint(path).gate
    assert after.threshold == before.threshold
    assert all(torch.equal(a, b) for a, b in zip(after.gate.state_dict().values(), before.gate.state_dict().values()))


def test_a_checkpoint_without_a_gate_refuses_nothing(trained_checkpoint):
    predictor = Predictor(trained_checkpoint)
    assert predictor.gate is None
    assert not predictor.assess(torch.stack([predictor.prepare(d) for d in _noise_photos(1)])).out_of_scope.any()


@pytest.mark.parametrize("mode", ["keep", "mark", "skip"])
def test_predict_cli_keeps_marks_or_skips_refused_images(gated_checkpoint, examples_dir, tmp_path, mode):
    folder = tmp_path / "in"
    shutil.copytree(examples_dir / "images", folder)
    for i, data in enumerate(_noise_photos(1)):
        (folder / f"noise{i}.png").write_bytes(data)
    out = tmp_path / "out.csv"
    args = [str(folder), "--csv", str(out), "--checkpoint", str(gated_checkpoint), "--out-of-scope", mode]
    assert predict_main(args) == 0
    rows = list(csv.DictReader(out.open()))
    noise = [r for r in rows if r["image"].startswith("noise")]
    if mode == "skip":
        assert len(rows) == 14 and not noise
    else:
        assert len(rows) == 14 + len(_noise_photos(1))
    if mode == "mark":
        assert {r["out_of_scope"] for r in noise} == {"1"}
        assert {r["out_of_scope"] for r in rows if not r["image"].startswith("noise")} == {"0"}
    if mode == "keep":
        assert "out_of_scope" not in rows[0]


def test_ood_photos_are_split_by_patient(tmp_path):
    clinical = tmp_path / "clinical"
    clinical.mkdir()
    with open(clinical / "manifest.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "source_tag", "label"])
        writer.writerows([f"p{p}_{i}.jpg", "padufes20", f"PAT_{p}"] for p in range(10) for i in range(3))
    items = read_ood(tmp_path)
    assert len(items) == 30 and {kind for _, _, kind in items} == {"clinical/padufes20"}
    fit, held = split_groups(items, fraction=0.4, seed=0)
    assert len(held) == 12  # four patients of three photos
    assert not {group for _, group, _ in fit} & {group for _, group, _ in held}

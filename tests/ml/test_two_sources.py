"""Training and evaluation on two sources: HAM10000 (the committed examples) and an ISIC 2019 folder."""

import json

import pytest
import torch

from ml import CLASS_CODES
from ml.augment import random_resolution
from ml.checkpoint import load_checkpoint
from ml.evaluate import main as evaluate_main
from ml.train import TrainConfig, selection_score, train

# Trains and evaluates on two generated sources.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_source_checkpoint(tmp_path_factory):
    from tests.conftest import EXAMPLES, write_isic2019

    folder = tmp_path_factory.mktemp("isic")
    codes = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC"]
    rows = [(f"ISIC_99{i:03d}{k}", codes[i % 7], f"BCN_{i:07d}") for i in range(21) for k in range(2)]
    isic = write_isic2019(folder / "isic2019", rows)
    out = folder / "two.pt"
    config = TrainConfig(epochs=1, batch_size=4, epoch_size=16, resolution_low=84, seed=0)
    train(data=[EXAMPLES, isic], out=out, config=config)
    return out, isic


def test_the_checkpoint_records_every_source_and_the_external_split(two_source_checkpoint):
    out, _ = two_source_checkpoint
    data = torch.load(out, map_location="cpu", weights_only=True)["data"]
    assert set(data["sources"]) == {"HAM10000", "BCN_20000"}
    assert data["sources"]["BCN_20000"]["AKIEC"] == 6
    assert sum(data["external_counts"].values()) > 0
    assert data["images"] == 14 + 42
    history = torch.load(out, map_location="cpu", weights_only=True)["metrics"]["history"]
    assert history[0]["external_balanced_accuracy"] is not None
    assert history[0]["score"] == selection_score(
        history[0]["val_balanced_accuracy"], history[0]["external_balanced_accuracy"]
    )


def test_an_epoch_has_the_asked_number_of_draws(two_source_checkpoint):
    out, _ = two_source_checkpoint
    training = torch.load(out, map_location="cpu", weights_only=True)["training"]
    assert training["epoch_size"] == 16 and training["resolution_low"] == 84


def test_selection_uses_both_validation_sets():
    assert selection_score(0.6, None) == 0.6
    assert selection_score(0.6, 0.4) == pytest.approx(0.5)
    assert selection_score(0.62, 0.40) < selection_score(0.60, 0.44)  # a loss abroad is not hidden


def test_random_resolution_blurs_only_sharper_images():
    torch.manual_seed(0)
    images = torch.rand(4, 3, 64, 64) * 255
    sides = torch.tensor([150, 150, 84, 84])
    out = random_resolution(images, sides, low=84, probability=1.0)
    assert torch.equal(out[2:], images[2:])  # already at the lowest resolution: untouched
    assert not torch.equal(out[:2], images[:2])
    assert out[:2].std() < images[:2].std()  # blurred: less pixel-to-pixel variation


def test_evaluate_reports_both_sets_side_by_side_and_records_the_triage(two_source_checkpoint, tmp_path, capsys):
    out, isic = two_source_checkpoint
    from tests.conftest import EXAMPLES

    args = ["--data", str(EXAMPLES), "--data", str(isic), "--checkpoint", str(out), "--out", str(tmp_path)]
    assert evaluate_main([*args, "--baseline", str(out), "--record"]) == 0
    printed = capsys.readouterr().out
    assert "validation" in printed and "external" in printed and "malignant-vs-benign AUC" in printed
    result = json.loads((tmp_path / "two_val.json").read_text())
    assert set(result["sets"]) == {"validation", "external"}
    external = result["sets"]["external"]
    assert external["sources"] == ["BCN_20000"]
    assert external["baseline"]["difference_ci95"] == [0.0, 0.0]  # a model against itself
    assert set(external["triage"]) >= {"sensitivity", "specificity", "coverage", "selective_accuracy"}
    recorded = load_checkpoint(out).meta["metrics"]
    assert recorded["evaluation"]["external"]["balanced_accuracy"] == external["balanced_accuracy"]
    assert recorded["triage"]["policy"] == result["triage"]["policy"]
    assert set(external["per_class"]) == set(CLASS_CODES)

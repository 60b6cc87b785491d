"""The out-of-distribution gate: its features, its fit, its threshold, and the refusal path."""

import csv
import io
import random
import shutil
from collections import Counter
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from ml import CLASS_CODES
from ml.augment import simulated_upload
from ml.checkpoint import (
    CheckpointError,
    gate_fingerprint,
    load_checkpoint,
    record_evaluation,
    record_gate,
    save_checkpoint,
)
from ml.data import Sample, load_pixels_and_sides
from ml.efficientnet import EfficientNetConfig, EfficientNetLite0
from ml.fit_gate import (
    _validation_sets,
    balanced_draw,
    choose_threshold,
    fit_evidence,
    gate_fit_and_report,
    gate_parts,
    read_ood,
    split_groups,
)
from ml.fit_gate import main as fit_gate_main
from ml.gate import Gate, GateConfig, gate_features, image_statistics
from ml.inference import Predictor, predict_logits
from ml.model import SimpleBNConv, fold_for_inference
from ml.negatives import NOISE, non_lesion_images
from ml.predict import main as predict_main
from ml.preprocessing import PreprocessConfig, decode, prepare


def test_gate_features_are_block_statistics_image_statistics_and_the_energy():
    logits = torch.tensor([[1.0, 2.0, 3.0]])
    blocks = [torch.arange(8.0).view(1, 2, 2, 2), torch.ones(1, 3, 2, 2)]
    pixels = torch.full((1, 3, 48, 48), 100.0)
    features = gate_features(logits, blocks, pixels)
    assert features.shape == (1, 3 * 2 + 3 * 3 + 14 + 1)
    assert features[0, :2].tolist() == [1.5, 5.5]  # channel means of the first block
    assert features[0, 4:6].tolist() == [3.0, 7.0]  # and their peaks
    assert features[0, -1] == pytest.approx(float(torch.logsumexp(logits, dim=1)))
    assert torch.equal(features[0, -15:-1], image_statistics(pixels)[0])


def test_an_empty_set_gets_no_scores_and_no_warning(recwarn):
    model = fold_for_inference(SimpleBNConv().eval())
    for channels in ((), GateConfig.channels):
        gate = Gate(GateConfig(features=687, channels=channels)).eval()
        empty = torch.empty(0, 3, 224, 224, dtype=torch.uint8)
        assert gate_parts(gate, model, empty, PreprocessConfig()).shape == (0, 1 + bool(channels))
    assert not recwarn.list


def test_image_statistics_do_not_read_sharpness():
    torch.manual_seed(0)
    sharp = torch.randint(0, 256, (1, 3, 64, 64)).float()
    # Blurred within each 2×2 cell: the fine texture is gone, the half-resolution image is the same.
    blurred = F.interpolate(F.avg_pool2d(sharp, 2), scale_factor=2, mode="nearest")
    torch.testing.assert_close(image_statistics(sharp), image_statistics(blurred))


def test_image_statistics_see_a_dark_round_border():
    yy, xx = torch.meshgrid(torch.arange(60.0), torch.arange(60.0), indexing="ij")
    disc = ((yy - 30) ** 2 + (xx - 30) ** 2 < 28**2).float()
    dermatoscope = (disc * 180).expand(1, 3, 60, 60)  # lit disc, black corners
    photo = torch.full((1, 3, 60, 60), 180.0)
    corner_to_centre = -1  # the corners' brightness against the centre's
    assert image_statistics(dermatoscope)[0, corner_to_centre] < 0.1
    assert image_statistics(photo)[0, corner_to_centre] == pytest.approx(1.0)


def test_the_evidence_network_separates_two_clouds_within_the_refusal_budget():
    torch.manual_seed(0)
    positives, negatives = torch.randn(400, 5) + 3, torch.randn(400, 5) - 3
    net = fit_evidence(positives, negatives, config=GateConfig(features=5), epochs=20)
    held_positive, held_negative = torch.randn(200, 5) + 3, torch.randn(200, 5) - 3
    with torch.no_grad():
        threshold = choose_threshold({"held": net(held_positive)}, max_refusal=0.02)
        assert float((net(held_positive) < threshold).float().mean()) <= 0.02
        assert float((net(held_negative) < threshold).float().mean()) >= 0.95


def test_the_threshold_refuses_no_more_than_its_share_of_any_cancer_class():
    # 100 lesions: 90 nevi scoring 1..90, 10 melanomas scoring 0.1..1.0, the lowest of the set.
    classes = torch.tensor([CLASS_CODES.index("NV")] * 90 + [CLASS_CODES.index("MEL")] * 10)
    scores = torch.cat([torch.arange(1.0, 91.0), torch.arange(1.0, 11.0) / 10])
    overall = choose_threshold({"set": scores}, max_refusal=0.05)
    assert int((scores < overall).sum()) == 4  # four melanomas of ten: within 5 % of the set

    def guarded(classes: torch.Tensor) -> float:
        return choose_threshold({"set": scores}, max_refusal=0.05, labels={"set": classes}, max_cancer_refusal=0.1)

    assert int((scores < guarded(classes)).sum()) == 0  # at most one melanoma in ten: none
    # Benign classes are held to the overall share only: low-scoring keratoses do not lower the threshold.
    assert guarded(torch.where(classes == CLASS_CODES.index("MEL"), CLASS_CODES.index("BKL"), classes)) == overall
    no_limit = choose_threshold({"set": scores}, max_refusal=0.05, labels={"set": classes}, max_cancer_refusal=1)
    assert no_limit == overall  # --max-cancer-refusal 1: no limit per class


def _noise_photos(n: int) -> list[bytes]:
    return [data for _, data in non_lesion_images(per_kind=n, seed=5, kinds=NOISE)]


@pytest.fixture(scope="module")
def gated(tmp_path_factory):
    """A tiny two-source checkpoint whose gate `ml.fit_gate` fitted against generated noise photos.

    Training and fitting take most of a minute: the tests that use it are marked slow.
    """
    from ml.train import TrainConfig, train
    from tests.conftest import EXAMPLES, write_isic2019

    folder = tmp_path_factory.mktemp("gate")
    codes = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC"]
    isic = write_isic2019(
        folder / "isic", [(f"ISIC_99{i:03d}{k}", codes[i % 7], f"BCN_{i:07d}") for i in range(28) for k in range(2)]
    )
    checkpoint = folder / "gated.pt"
    train(data=[EXAMPLES, isic], out=checkpoint, config=TrainConfig(epochs=1, batch_size=4, epoch_size=8))
    ood = folder / "ood" / "natural"
    ood.mkdir(parents=True)
    with open(ood / "manifest.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "source_tag", "label"])
        for i, data in enumerate(_noise_photos(2)):
            (ood / f"noise{i}.png").write_bytes(data)
            writer.writerow([f"noise{i}.png", "noise", "x"])
    report = gate_fit_and_report(
        checkpoint=checkpoint, data=[EXAMPLES, isic], ood=ood.parent, fit_positives=64, pixel_epochs=1, generated=(2, 1)
    )
    return checkpoint, [EXAMPLES, isic], report


@pytest.mark.slow
def test_fit_gate_stores_a_gate_and_reports_every_set(gated):
    checkpoint, _, report = gated
    gate = load_checkpoint(checkpoint).gate
    assert gate.threshold == report["threshold"]
    sets = {row["set"] for row in report["rows"]}
    assert {"HAM10000 validation (report)", "other-hospital validation (report)", "natural/noise"} <= sets
    assert {"HAM10000 validation, as uploads (threshold)", "HAM10000 validation, as uploads (report)"} <= sets
    assert {f"generated/{kind}" for kind in NOISE} <= sets
    for row in report["rows"]:
        if row["set"].endswith("(threshold)"):
            assert row["refused_share"] <= report["max_refusal"]
        if row["dermatoscopic"]:  # refusals per class, adding up to the row's
            assert sum(c["refused"] for c in row["per_class"].values()) == row["refused"]
            assert sum(c["images"] for c in row["per_class"].values()) == row["images"]


@pytest.mark.slow
def test_the_served_gate_scores_what_the_fit_scored(gated):
    # Features computed in Predictor.assess (the web path) must be those the gate was fitted and
    # thresholded on, or the threshold means nothing.
    checkpoint, data, _ = gated
    loaded = load_checkpoint(checkpoint)
    _, sets = _validation_sets(loaded, data)
    pixels = load_pixels_and_sides(sets["HAM10000 validation (threshold)"], preprocess=loaded.preprocess)[0]
    gate = loaded.gate.gate
    raw = gate_parts(gate, fold_for_inference(loaded.model), pixels, loaded.preprocess)
    expected = ((raw - gate.scale[:, 0]) / gate.scale[:, 1]).sum(dim=1)
    served = Predictor(checkpoint).assess(pixels)
    assert torch.allclose(served.gate_scores, expected, atol=1e-4)
    assert torch.equal(served.out_of_scope, served.gate_scores < loaded.gate.threshold)


@pytest.mark.slow
def test_a_gate_that_reads_other_features_is_refused_at_load_not_at_the_first_request(gated, tmp_path):
    checkpoint, _, _ = gated
    path = tmp_path / "stale.pt"
    shutil.copy(checkpoint, path)
    features = load_checkpoint(path).gate.gate.config.features
    record_gate(path, gate=Gate(GateConfig(features=features + 2)), threshold=0.0, report={})
    with pytest.raises(CheckpointError, match=f"reads {features + 2} features, this code computes {features}"):
        Predictor(path)


@pytest.mark.slow
def test_the_gate_survives_recording_an_evaluation(gated, tmp_path):
    checkpoint, _, _ = gated
    path = tmp_path / "copy.pt"
    shutil.copy(checkpoint, path)
    before = load_checkpoint(path).gate
    record_evaluation(path, key="validation", report={"n": 1})
    after = load_checkpoint(path).gate
    assert after.threshold == before.threshold
    assert all(torch.equal(a, b) for a, b in zip(after.gate.state_dict().values(), before.gate.state_dict().values()))


@pytest.mark.slow
def test_the_pixel_network_can_be_reused_for_another_classifier(gated, tmp_path):
    checkpoint, data, _ = gated
    other = tmp_path / "other.pt"
    shutil.copy(checkpoint, other)
    gate_fit_and_report(
        checkpoint=other,
        data=data,
        ood=tmp_path_ood(tmp_path),
        fit_positives=32,
        pixels_from=checkpoint,
        generated=(2, 1),
    )
    reused, original = load_checkpoint(other).gate.gate.pixels, load_checkpoint(checkpoint).gate.gate.pixels
    assert all(torch.equal(a, b) for a, b in zip(reused.state_dict().values(), original.state_dict().values()))


@pytest.mark.slow
def test_an_evidence_only_gate_needs_no_second_network(gated, tmp_path, examples_dir):
    checkpoint, data, _ = gated
    other = tmp_path / "evidence-only.pt"
    shutil.copy(checkpoint, other)
    report = gate_fit_and_report(
        checkpoint=other, data=data, ood=tmp_path_ood(tmp_path), fit_positives=32, pixel_network=False, generated=(2, 1)
    )
    predictor = Predictor(other)
    assert predictor.gate.gate.pixels is None and report["fit"]["pixel_network"] is False
    pixels = torch.stack([predictor.read(p.read_bytes()) for p in sorted((examples_dir / "images").iterdir())])
    assessment = predictor.assess(pixels)
    assert assessment.gate_scores.shape == (14,)
    assert torch.equal(assessment.out_of_scope, assessment.gate_scores < predictor.gate.threshold)


def _borrower(gated_checkpoint, folder: Path) -> tuple[Path, Path]:
    """(lender, borrower) side by side: a copy of the gated checkpoint and an EfficientNet-Lite0 without a gate."""
    lender, borrower = folder / "lender.pt", folder / "accurate.pt"
    shutil.copy(gated_checkpoint, lender)
    torch.manual_seed(2)
    model = EfficientNetLite0(EfficientNetConfig(input_size=32)).eval()
    save_checkpoint(borrower, model=model, preprocess=load_checkpoint(lender).preprocess)
    return lender, borrower


@pytest.mark.slow
def test_a_model_is_served_with_the_gate_of_another(gated, tmp_path, examples_dir):
    """The accurate model keeps the default model's gate: its own answers, the lender's verdicts."""
    lender, borrower = _borrower(gated[0], tmp_path)
    assert fit_gate_main(["--checkpoint", str(borrower), "--gate-of", str(lender)]) == 0
    served, lending = Predictor(borrower), Predictor(lender)
    assert served.gate_from == {"file": "lender.pt", "fingerprint": gate_fingerprint(load_checkpoint(lender))}
    pixels = torch.stack([served.read(p.read_bytes()) for p in sorted((examples_dir / "images").iterdir())])
    assessment, lenders = served.assess(pixels), lending.assess(pixels)
    logits = predict_logits(served.inference_model, pixels, preprocess=served.preprocess)
    own = F.softmax(logits / served.temperature, dim=1)
    assert torch.allclose(assessment.probabilities, own, atol=1e-5)
    assert not torch.allclose(assessment.probabilities, lenders.probabilities, atol=1e-3)  # two untrained models
    assert torch.allclose(assessment.gate_scores, lenders.gate_scores, atol=1e-5)
    assert torch.equal(assessment.out_of_scope, lenders.out_of_scope)


@pytest.mark.slow
def test_a_borrowed_gate_is_checked_against_its_lender_at_load(gated, tmp_path):
    lender, borrower = _borrower(gated[0], tmp_path)
    fit_gate_main(["--checkpoint", str(borrower), "--gate-of", str(lender)])
    record_evaluation(lender, key="validation", report={"n": 1})  # the file changes, the gate and its model do not
    assert Predictor(borrower).gate.threshold == load_checkpoint(lender).gate.threshold
    # Served through a link from elsewhere, the lender is still found beside the borrower's file.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "current.pt").symlink_to(borrower)
    assert Predictor(elsewhere / "current.pt").gate_from["file"] == "lender.pt"
    lent = load_checkpoint(lender).gate
    record_gate(lender, gate=lent.gate, threshold=lent.threshold + 0.5, report=lent.report)  # refitted
    with pytest.raises(CheckpointError, match="borrows the gate of 'lender.pt', whose model or gate has changed"):
        Predictor(borrower)
    lender.unlink()
    with pytest.raises(CheckpointError, match="borrows the gate of 'lender.pt', which is missing beside it"):
        Predictor(borrower)
    # Recording a gate of its own drops the reference.
    record_gate(borrower, gate=Gate(lent.gate.config), threshold=0.0, report={})
    assert "gate_from" not in load_checkpoint(borrower).meta


@pytest.mark.slow
def test_a_gate_is_lent_only_by_a_gated_checkpoint_of_its_own_beside_the_borrower(
    gated, tmp_path, trained_checkpoint, capsys
):
    lender, borrower = _borrower(gated[0], tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(lender, elsewhere / "lender.pt")
    ungated = tmp_path / "ungated.pt"
    shutil.copy(trained_checkpoint, ungated)
    second = tmp_path / "second.pt"
    shutil.copy(borrower, second)
    fit_gate_main(["--checkpoint", str(second), "--gate-of", str(lender)])
    refused = [
        (borrower, elsewhere / "lender.pt", "must sit beside"),
        (borrower, ungated, "has no gate of its own"),
        (borrower, second, "serves a borrowed gate itself"),
        (lender, lender, "cannot lend its gate to itself"),
    ]
    for target, source, message in refused:
        with pytest.raises(SystemExit) as exit_info:
            fit_gate_main(["--checkpoint", str(target), "--gate-of", str(source)])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert "gate_from" not in load_checkpoint(borrower).meta
    assert Predictor(lender).gate is not None


@pytest.mark.slow
def test_fit_gate_reports_a_full_resolution_folder_at_every_resolution(gated, tmp_path, examples_dir):
    checkpoint, data, _ = gated
    folder = tmp_path / "fullres"
    (folder / "images").mkdir(parents=True)
    rows = ["image,isic2018_class"]
    for path, code in (("ISIC_0024306", "NV"), ("ISIC_0024310", "MEL")):
        upscaled = Image.open(examples_dir / "images" / f"{path}.jpg").resize((767, 576))
        upscaled.save(folder / "images" / f"{path}.jpg", quality=95)
        rows.append(f"{path},{code}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    other = tmp_path / "copy.pt"
    shutil.copy(checkpoint, other)
    report = gate_fit_and_report(
        checkpoint=other,
        data=data,
        ood=tmp_path_ood(tmp_path),
        fullres=folder,
        fit_positives=32,
        pixels_from=other,
        generated=(2, 1),
    )
    fullres = [row for row in report["rows"] if row["set"].startswith("fullres, ")]
    assert [row["set"] for row in fullres] == [
        "fullres, native (report)",
        "fullres, 600×450 (report)",
        "fullres, 200×150 (report)",
    ]
    assert all(row["images"] == 2 and set(row["per_class"]) == {"MEL", "NV"} for row in fullres)
    assert load_checkpoint(other).gate.report["rows"][-1]["set"] == "fullres, 200×150 (report)"


def test_positives_are_drawn_with_every_class_alike():
    labels = [0] * 90 + [1] * 9 + [2]
    samples = [Sample(f"i{i}", None, label, Path("x.jpg")) for i, label in enumerate(labels)]
    counts = Counter(sample.label for sample in balanced_draw(samples, count=3000, seed=0))
    assert all(900 <= counts[c] <= 1100 for c in range(3))


def test_a_simulated_upload_is_a_jpeg_of_another_size_that_the_site_reads(example_image):
    rng = random.Random(0)
    image = Image.open(io.BytesIO(example_image))
    sizes = set()
    for _ in range(8):
        data = simulated_upload(image, rng)
        assert data[:3] == b"\xff\xd8\xff"
        sizes.add(Image.open(io.BytesIO(data)).size)
        assert prepare(decode(data)).shape == (3, 224, 224)
    assert len(sizes) == 8 and max(max(size) for size in sizes) > 400  # rescaled, up to a large export


def tmp_path_ood(tmp_path):
    folder = tmp_path / "ood" / "natural"
    folder.mkdir(parents=True)
    (folder / "noise.png").write_bytes(_noise_photos(1)[0])
    (folder / "manifest.csv").write_text("file,source_tag,label\nnoise.png,noise,x\n")
    return folder.parent


def test_a_checkpoint_without_a_gate_refuses_nothing(trained_checkpoint):
    predictor = Predictor(trained_checkpoint)
    assert predictor.gate is None
    assert not predictor.assess(torch.stack([predictor.read(d) for d in _noise_photos(1)])).out_of_scope.any()


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["keep", "mark", "skip"])
def test_predict_cli_keeps_marks_or_skips_refused_images(gated, examples_dir, tmp_path, mode):
    checkpoint, _, _ = gated
    folder = tmp_path / "in"
    shutil.copytree(examples_dir / "images", folder)
    # A document: refused by the guard in front of the gate, whatever this tiny gate would say.
    (folder / "letter.png").write_bytes(next(d for k, d in non_lesion_images(per_kind=1) if k == "document"))
    out = tmp_path / "out.csv"
    assert predict_main([str(folder), "--csv", str(out), "--checkpoint", str(checkpoint), "--out-of-scope", mode]) == 0
    rows = {r["image"]: r for r in csv.DictReader(out.open())}
    assert ("letter" in rows) == (mode != "skip")
    if mode == "mark":
        assert rows["letter"]["out_of_scope"] == "1"
        refused_lesions = [name for name, r in rows.items() if name != "letter" and r["out_of_scope"] == "1"]
        assert len(rows) == 15 and len(refused_lesions) == sum(
            Predictor(checkpoint)
            .assess(
                torch.stack(
                    [Predictor(checkpoint).read(p.read_bytes()) for p in sorted((examples_dir / "images").iterdir())]
                )
            )
            .out_of_scope.tolist()
        )
    if mode == "keep":
        assert len(rows) == 15 and "out_of_scope" not in rows["letter"]


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

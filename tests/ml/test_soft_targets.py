"""The teacher's soft targets stored once (python -m ml.soft_targets), and a student distilled from the table."""

import dataclasses
import hashlib

import pytest
import torch
import torch.nn.functional as F

from ml import CLASS_CODES
from ml.augment import dihedral
from ml.checkpoint import CheckpointError, load_checkpoint, plain_config
from ml.data import load_pixels, read_sources, split_sources
from ml.distill import SOFT_TARGETS_FORMAT, soft_targets_for
from ml.inference import predict_logits
from ml.preprocessing import PreprocessConfig, normalize
from ml.soft_targets import main as soft_targets_main
from ml.soft_targets import soft_targets_write
from ml.train import TrainConfig, train
from tests.conftest import EXAMPLES

pytestmark = pytest.mark.slow  # tiny training runs

TRAIN = split_sources(read_sources([EXAMPLES])).train  # the committed examples' training split


@pytest.fixture(scope="module")
def table_path(tmp_path_factory, trained_checkpoint):
    """A table of the tiny trained model as teacher (its answers differ per image), two views each."""
    out = tmp_path_factory.mktemp("soft") / "soft-targets.pt"
    soft_targets_write(teacher=trained_checkpoint, data=[EXAMPLES], out=out, views=2, chunk=3)
    return out


def label_table(path, samples, *, shift: int = 0):
    """A table whose logits name each sample's own class (or, with ``shift``, another image's)."""
    labels = torch.tensor([s.label for s in samples]).roll(shift)
    torch.save(
        {
            "format": SOFT_TARGETS_FORMAT,
            "teacher": {"file": "labels", "sha256": "", "arch": ""},
            "preprocessing": plain_config(PreprocessConfig()),
            "views": 1,
            "class_codes": list(CLASS_CODES),
            "image_ids": [s.image_id for s in samples],
            "logits": (8 * F.one_hot(labels, len(CLASS_CODES))).half(),
        },
        path,
    )
    return path


def test_the_views_come_in_order_each_with_its_mirror():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float).reshape(2, 3, 4, 4)  # no symmetry
    turn = lambda k: torch.rot90(x, k, dims=(-2, -1))  # noqa: E731
    expected = [x, x.flip(-1), turn(2), turn(2).flip(-1), turn(1), turn(1).flip(-1), turn(3), turn(3).flip(-1)]
    for views in range(1, 9):
        got = dihedral(x, views)
        assert len(got) == views
        assert all(torch.equal(a, b) for a, b in zip(got, expected, strict=False))
    for views in (0, 9):
        with pytest.raises(ValueError, match="between 1 and 8"):
            dihedral(x, views)


def test_predict_logits_averages_the_first_views(trained_checkpoint):
    loaded = load_checkpoint(trained_checkpoint)
    pixels = load_pixels(TRAIN[:3], preprocess=loaded.preprocess)
    x = normalize(pixels, preprocess=loaded.preprocess)
    for views in (1, 2, 4):
        with torch.no_grad():
            expected = torch.stack([loaded.model(v) for v in dihedral(x, views)]).mean(dim=0)
        got = predict_logits(loaded.model, pixels, preprocess=loaded.preprocess, views=views)
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(
        predict_logits(loaded.model, pixels, preprocess=loaded.preprocess, views=1),
        predict_logits(loaded.model, pixels, preprocess=loaded.preprocess, views=2),
    )


def test_the_table_holds_the_teachers_logits_of_every_training_image(table_path, trained_checkpoint):
    table = torch.load(table_path, map_location="cpu", weights_only=True)
    teacher = load_checkpoint(trained_checkpoint)
    assert table["image_ids"] == [s.image_id for s in TRAIN]
    assert table["logits"].dtype == torch.float16 and table["views"] == 2
    assert table["teacher"]["sha256"] == teacher.sha256
    pixels = load_pixels(TRAIN, preprocess=teacher.preprocess)
    expected = predict_logits(teacher.model, pixels, preprocess=teacher.preprocess, views=2)
    torch.testing.assert_close(table["logits"].float(), expected, atol=1e-2, rtol=1e-2)  # every row, in order
    assert len({tuple(row.tolist()) for row in table["logits"]}) == len(TRAIN)  # one answer per image


def test_the_rows_follow_the_samples_asked_for(table_path):
    table = torch.load(table_path, map_location="cpu", weights_only=True)
    some = [TRAIN[4], TRAIN[0], TRAIN[2]]
    got = soft_targets_for(table_path, some, preprocess=PreprocessConfig())
    torch.testing.assert_close(got.logits, table["logits"][[4, 0, 2]].float())
    assert got.source == {
        "file": str(table_path),
        "sha256": hashlib.sha256(table_path.read_bytes()).hexdigest(),
        "teacher": table["teacher"],
        "views": 2,
    }


def test_a_student_learns_each_image_from_its_own_row(tmp_path):
    """Distilled from a table that names each image's class, the student learns the labels; from the
    same table with its rows shifted by one image, it learns other images' classes."""
    config = TrainConfig(epochs=4, batch_size=4, lr=3e-3, warmup_epochs=0, distill_weight=1.0, seed=0)
    aligned, shifted = label_table(tmp_path / "aligned.pt", TRAIN), label_table(tmp_path / "shifted.pt", TRAIN, shift=1)
    train(data=EXAMPLES, out=tmp_path / "aligned-student.pt", config=config, soft_targets=aligned)
    train(data=EXAMPLES, out=tmp_path / "shifted-student.pt", config=config, soft_targets=shifted)
    labels = torch.tensor([s.label for s in TRAIN])

    def training_loss(path) -> float:
        loaded = load_checkpoint(path)
        logits = predict_logits(
            loaded.model, load_pixels(TRAIN, preprocess=loaded.preprocess), preprocess=loaded.preprocess
        )
        return float(F.cross_entropy(logits, labels))

    # Measured: 4.5 against 9.7 (the labels' cross-entropy after four epochs of 14 images).
    assert training_loss(tmp_path / "aligned-student.pt") < training_loss(tmp_path / "shifted-student.pt")
    training = load_checkpoint(tmp_path / "aligned-student.pt").meta["training"]
    assert training["soft_targets"]["sha256"] == hashlib.sha256(aligned.read_bytes()).hexdigest()
    assert training["teacher"] is None


def test_a_table_for_other_images_or_other_preprocessing_is_refused(table_path, tmp_path):
    samples = read_sources([EXAMPLES])
    with pytest.raises(CheckpointError, match=r"lack \d+ of the 14 training images"):
        soft_targets_for(table_path, samples, preprocess=PreprocessConfig())  # the validation images too
    with pytest.raises(CheckpointError, match="the student on .*'colour_constancy': 'none'"):
        soft_targets_for(table_path, TRAIN, preprocess=PreprocessConfig(colour_constancy="none"))
    not_a_table = tmp_path / "x.pt"
    torch.save({"weights": torch.zeros(1)}, not_a_table)
    with pytest.raises(CheckpointError, match="is not a soft-target table"):
        soft_targets_for(not_a_table, TRAIN, preprocess=PreprocessConfig())
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(table_path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="is not a readable soft-target table"):
        soft_targets_for(corrupt, TRAIN, preprocess=PreprocessConfig())


def test_a_resumed_run_keeps_its_table(tmp_path):
    config = TrainConfig(epochs=1, batch_size=4, distill_weight=1.0)
    out = tmp_path / "student.pt"
    train(data=EXAMPLES, out=out, config=config, soft_targets=label_table(tmp_path / "a.pt", TRAIN))
    other = label_table(tmp_path / "b.pt", TRAIN, shift=1)
    with pytest.raises(CheckpointError, match="continues a run of"):
        train(data=EXAMPLES, out=out, config=dataclasses.replace(config, epochs=2), resume=True, soft_targets=other)


def test_a_student_distils_from_a_teacher_or_its_table_not_both(table_path, teacher_checkpoint, tmp_path):
    with pytest.raises(ValueError, match="not both"):
        train(
            data=EXAMPLES,
            out=tmp_path / "s.pt",
            config=TrainConfig(epochs=1),
            teacher=teacher_checkpoint,
            soft_targets=table_path,
        )


def test_the_command_writes_a_table_and_refuses_other_view_counts(trained_checkpoint, tmp_path, capsys):
    out = tmp_path / "table.pt"
    args = ["--teacher", str(trained_checkpoint), "--data", str(EXAMPLES), "--out", str(out)]
    assert soft_targets_main([*args, "--views", "1"]) == 0
    assert "× 1 views" in capsys.readouterr().err
    assert torch.load(out, weights_only=True)["views"] == 1
    with pytest.raises(SystemExit):
        soft_targets_main([*args, "--views", "9"])
    assert "invalid choice: 9" in capsys.readouterr().err

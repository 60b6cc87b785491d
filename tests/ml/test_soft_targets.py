"""The teacher's soft targets stored once, and a student distilled from the table."""

import pytest
import torch
import torch.nn.functional as F

from ml.augment import dihedral
from ml.checkpoint import CheckpointError, load_checkpoint
from ml.data import read_sources, split_sources
from ml.distill import soft_targets_for, teacher_logits
from ml.inference import Predictor, predict_logits
from ml.preprocessing import PreprocessConfig, normalize
from ml.soft_targets import main as soft_targets_main
from ml.soft_targets import soft_targets_write
from ml.train import TrainConfig, train
from tests.conftest import EXAMPLES

pytestmark = pytest.mark.slow  # tiny training runs


@pytest.fixture(scope="module")
def table_path(tmp_path_factory, teacher_checkpoint):
    """The untrained teacher's table for the committed examples, two views per image."""
    out = tmp_path_factory.mktemp("soft") / "soft-targets.pt"
    soft_targets_write(teacher=teacher_checkpoint, data=[EXAMPLES], out=out, views=2)
    return out


def test_views_average_the_teachers_logits_of_the_image_and_its_mirror():
    torch.manual_seed(0)
    # Not symmetric: its logits of an image and of its mirror differ.
    nn = torch.nn
    teacher = nn.Sequential(nn.Conv2d(3, 7, 3), nn.Flatten(2), nn.Linear(4, 1), nn.Flatten())
    pixels = torch.randint(0, 256, (3, 3, 4, 4), dtype=torch.uint8)
    preprocess = PreprocessConfig(size=4)
    x = normalize(pixels, preprocess=preprocess)
    one = teacher_logits(teacher, pixels, preprocess=preprocess, views=1)
    two = teacher_logits(teacher, pixels, preprocess=preprocess, views=2)
    with torch.no_grad():
        assert not torch.allclose(teacher(x), teacher(x.flip(-1)))
        torch.testing.assert_close(one, teacher(x))
        torch.testing.assert_close(two, (teacher(x) + teacher(x.flip(-1))) / 2)
        all_eight = torch.stack([teacher(v) for v in dihedral(x)]).mean(dim=0)
    torch.testing.assert_close(teacher_logits(teacher, pixels, preprocess=preprocess, views=8), all_eight)
    with pytest.raises(ValueError, match="between 1 and 8"):
        teacher_logits(teacher, pixels, preprocess=preprocess, views=9)


def test_the_table_holds_the_teachers_logits_of_every_training_image(table_path, teacher_checkpoint, examples_dir):
    table = torch.load(table_path, map_location="cpu", weights_only=True)
    teacher = load_checkpoint(teacher_checkpoint)
    train_split = split_sources(read_sources([examples_dir])).train
    assert table["image_ids"] == [s.image_id for s in train_split]
    assert table["logits"].dtype == torch.float16 and table["views"] == 2
    assert table["teacher"]["sha256"] == teacher.sha256
    read = Predictor(teacher_checkpoint).read
    first = read(train_split[0].path.read_bytes()).unsqueeze(0)
    with torch.no_grad():
        expected = (
            predict_logits(teacher.model, first, preprocess=teacher.preprocess)
            + predict_logits(teacher.model, first.flip(-1), preprocess=teacher.preprocess)
        ) / 2
    torch.testing.assert_close(table["logits"][:1].float(), expected, atol=2e-3, rtol=2e-3)


def test_a_student_distilled_from_the_table_moves_towards_its_teacher(table_path, examples_dir, tmp_path):
    config = TrainConfig(epochs=3, batch_size=4, lr=3e-3, warmup_epochs=0, distill_weight=1.0)
    train(data=examples_dir, out=tmp_path / "plain.pt", config=config)
    train(data=examples_dir, out=tmp_path / "student.pt", config=config, soft_targets=table_path)
    train_split = split_sources(read_sources([examples_dir])).train
    target = F.log_softmax(soft_targets_for(table_path, train_split, preprocess=PreprocessConfig()), dim=1)
    x = torch.stack([Predictor(tmp_path / "plain.pt").read(s.path.read_bytes()) for s in train_split])

    def divergence(path):
        loaded = load_checkpoint(path)
        logits = predict_logits(loaded.model, x, preprocess=loaded.preprocess)
        return float(F.kl_div(F.log_softmax(logits, dim=1), target, log_target=True, reduction="batchmean"))

    assert divergence(tmp_path / "student.pt") < divergence(tmp_path / "plain.pt")
    student = load_checkpoint(tmp_path / "student.pt").meta["training"]
    assert student["soft_targets"] == str(table_path) and student["teacher"] is None


def test_a_table_for_other_images_or_other_preprocessing_is_refused(table_path, examples_dir, tmp_path):
    samples = read_sources([examples_dir])
    with pytest.raises(CheckpointError, match=r"lack \d+ of the 14 training images"):
        soft_targets_for(table_path, samples, preprocess=PreprocessConfig())  # the validation images too
    with pytest.raises(CheckpointError, match="the student on .*'colour_constancy': 'none'"):
        soft_targets_for(table_path, samples, preprocess=PreprocessConfig(colour_constancy="none"))
    not_a_table = tmp_path / "x.pt"
    torch.save({"weights": torch.zeros(1)}, not_a_table)
    with pytest.raises(CheckpointError, match="is not a soft-target table"):
        soft_targets_for(not_a_table, samples, preprocess=PreprocessConfig())


def test_a_student_distils_from_a_teacher_or_its_table_not_both(table_path, teacher_checkpoint, examples_dir, tmp_path):
    with pytest.raises(ValueError, match="not both"):
        train(
            data=examples_dir,
            out=tmp_path / "s.pt",
            config=TrainConfig(epochs=1),
            teacher=teacher_checkpoint,
            soft_targets=table_path,
        )


def test_the_command_writes_a_table(teacher_checkpoint, examples_dir, tmp_path, capsys):
    out = tmp_path / "table.pt"
    args = ["--teacher", str(teacher_checkpoint), "--data", str(examples_dir), "--out", str(out), "--views", "1"]
    assert soft_targets_main(args) == 0
    assert "× 1 views" in capsys.readouterr().err
    assert torch.load(out, weights_only=True)["views"] == 1

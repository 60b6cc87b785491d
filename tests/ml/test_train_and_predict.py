"""A two-epoch training run on the committed examples, then the checkpoint and the predict CLI."""

import csv
import json
import shutil

import pytest
import torch
import torch.nn.functional as F

from ml import CLASS_CODES
from ml.checkpoint import CheckpointError, load_checkpoint, save_checkpoint, save_half_precision
from ml.distill import distillation_loss, with_teacher
from ml.efficientnet import EfficientNetLite0, load_imagenet_weights
from ml.evaluate import evaluate_checkpoint
from ml.evaluate import main as evaluate_main
from ml.inference import Predictor, predict_logits
from ml.model import fold_for_inference
from ml.predict import main as predict_main
from ml.preprocessing import PreprocessConfig
from ml.train import TrainConfig, learning_rate_schedule, rank_share, train

# Training and evaluation pipelines on tiny data: seconds each, minutes together.
pytestmark = pytest.mark.slow


def test_training_writes_a_checkpoint_that_loads_safely(trained_checkpoint):
    raw = torch.load(trained_checkpoint, map_location="cpu", weights_only=True)
    assert raw["arch"] == "SimpleBNConv"
    assert raw["class_codes"] == list(CLASS_CODES)
    assert raw["temperature"] > 0
    assert raw["data"]["images"] == 14
    assert raw["data"]["split_seed"] == 0
    assert raw["preprocessing"]["size"] == 224
    assert len(raw["metrics"]["history"]) == 2
    assert trained_checkpoint.with_suffix(".state.pt").exists()


def test_a_half_precision_copy_loads_with_nearly_the_same_logits(trained_checkpoint, tmp_path, example_image):
    half = tmp_path / "half.pt"
    save_half_precision(trained_checkpoint, half)
    raw = torch.load(half, map_location="cpu", weights_only=True)
    assert {v.dtype for v in raw["state_dict"].values() if v.is_floating_point()} == {torch.float16}
    assert half.stat().st_size < 0.6 * trained_checkpoint.stat().st_size
    original, copy = load_checkpoint(trained_checkpoint), load_checkpoint(half)
    assert next(copy.model.parameters()).dtype == torch.float32
    assert copy.meta["metrics"] == original.meta["metrics"]
    pixels = Predictor(trained_checkpoint).read(example_image).unsqueeze(0)
    logits = [predict_logits(m.model, pixels, preprocess=m.preprocess) for m in (original, copy)]
    torch.testing.assert_close(logits[1], logits[0], atol=2e-2, rtol=2e-2)
    assert not torch.equal(logits[1], logits[0])  # rounded, not the same weights


@pytest.mark.parametrize("stored_schedule", [True, False], ids=["schedule", "state-before-the-schedule-was-stored"])
def test_resume_continues_after_the_last_epoch(trained_checkpoint, examples_dir, tmp_path, stored_schedule):
    out = tmp_path / "tiny.pt"
    shutil.copy(trained_checkpoint, out)
    state = torch.load(trained_checkpoint.with_suffix(".state.pt"), map_location="cpu", weights_only=True)
    if not stored_schedule:
        del state["schedule"]
    torch.save(state, out.with_suffix(".state.pt"))
    before = torch.load(out, map_location="cpu", weights_only=True)["metrics"]["history"]
    train(data=examples_dir, out=out, config=TrainConfig(epochs=3, batch_size=4, seed=0), resume=True)
    history = torch.load(out, map_location="cpu", weights_only=True)["metrics"]["history"]
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert history[:2] == before


def test_a_resumed_run_takes_its_own_learning_rate(trained_checkpoint, examples_dir, tmp_path):
    out = tmp_path / "tiny.pt"
    shutil.copy(trained_checkpoint, out)
    shutil.copy(trained_checkpoint.with_suffix(".state.pt"), out.with_suffix(".state.pt"))
    before = torch.load(out.with_suffix(".state.pt"), map_location="cpu", weights_only=True)["model"]
    train(data=examples_dir, out=out, config=TrainConfig(epochs=3, batch_size=4, seed=0, lr=0.0), resume=True)
    after = torch.load(out.with_suffix(".state.pt"), map_location="cpu", weights_only=True)["model"]
    for name, value in before.items():  # with --lr 0 the third epoch moves no weight (BatchNorm statistics may)
        if "running" not in name and "num_batches" not in name:
            torch.testing.assert_close(after[name], value, msg=name)


def test_init_starts_from_the_given_weights(trained_checkpoint, examples_dir, tmp_path):
    out = tmp_path / "restart.pt"
    train(
        data=examples_dir, out=out, config=TrainConfig(epochs=1, batch_size=4, lr=0.0, seed=0), init=trained_checkpoint
    )
    start = load_checkpoint(trained_checkpoint).model.state_dict()
    restarted = torch.load(out, map_location="cpu", weights_only=True)
    assert restarted["training"]["init"] == str(trained_checkpoint)
    # With a learning rate of zero only the recomputed BatchNorm statistics may differ.
    for name, value in restarted["state_dict"].items():
        if "running" not in name and "num_batches" not in name:
            torch.testing.assert_close(value, start[name], msg=name)


def _rates(optimizer, schedule, steps):
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    return rates


def test_the_learning_rate_warms_up_decays_to_zero_and_resumes_from_its_state():
    def fresh():
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        return optimizer, learning_rate_schedule(optimizer, total_steps=10, warmup_steps=2)

    optimizer, schedule = fresh()
    rates = _rates(optimizer, schedule, 10)
    assert rates[:3] == pytest.approx([0.05, 0.1, 0.1])
    assert all(a > b for a, b in zip(rates[2:], rates[3:])) and 0 < rates[-1] < 0.01
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0)

    optimizer, schedule = fresh()
    _rates(optimizer, schedule, 4)
    states = optimizer.state_dict(), schedule.state_dict()
    optimizer, schedule = fresh()
    optimizer.load_state_dict(states[0])  # as train() resumes: the optimizer, then its schedule
    schedule.load_state_dict(states[1])
    assert _rates(optimizer, schedule, 6) == pytest.approx(rates[4:])


@pytest.mark.parametrize("world_size", [1, 2, 3, 8])
def test_ranks_get_equal_disjoint_shares_of_an_epoch(world_size):
    order = torch.randperm(129)  # 129 draws: an uneven split would give one rank an extra step
    shares = [rank_share(order, rank=rank, world_size=world_size) for rank in range(world_size)]
    assert len({len(share) for share in shares}) == 1
    assert len(set(torch.cat(shares).tolist())) == sum(len(share) for share in shares) > 129 - world_size


def test_checkpoint_predicts_probabilities_and_tta_ignores_flips_and_turns(trained_checkpoint, example_image):
    predictor = Predictor(trained_checkpoint)
    pixels = predictor.read(example_image)
    views = torch.stack([pixels, pixels.flip(-1), pixels.rot90(1, dims=(-2, -1))])
    plain = predictor.probabilities(views)
    assert plain.shape == (3, 7)
    assert torch.allclose(plain.sum(dim=1), torch.ones(3))
    assert not torch.allclose(plain[0], plain[1], atol=1e-4)  # one view alone depends on the orientation
    averaged = predictor.probabilities(views, tta=True)
    torch.testing.assert_close(averaged[1], averaged[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(averaged[2], averaged[0], atol=1e-5, rtol=0)


def test_predict_cli_writes_the_isic_csv_and_skips_bad_files(trained_checkpoint, examples_dir, tmp_path, capsys):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"definitely not a jpeg")
    out = tmp_path / "predictions.csv"
    assert (
        predict_main(
            [str(examples_dir / "images"), str(bad), "--csv", str(out), "--checkpoint", str(trained_checkpoint)]
        )
        == 0
    )
    with open(out, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["image", "MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
    assert len(rows) == 1 + 14
    assert {row[0] for row in rows[1:]} == {p.stem for p in (examples_dir / "images").iterdir()}
    for row in rows[1:]:
        assert sum(float(v) for v in row[1:]) == pytest.approx(1.0, abs=1e-4)
    assert "skipped" in (err := capsys.readouterr().err) and "broken.jpg" in err


def test_unknown_checkpoint_format_is_refused(tmp_path):
    path = tmp_path / "old.pt"
    torch.save({"format_version": 99}, path)
    with pytest.raises(CheckpointError, match="unsupported checkpoint format 99"):
        load_checkpoint(path)


def test_unknown_architecture_is_refused(trained_checkpoint, tmp_path):
    raw = torch.load(trained_checkpoint, map_location="cpu", weights_only=True)
    raw["arch"] = "ResNet9000"
    path = tmp_path / "other.pt"
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match="unknown architecture 'ResNet9000'"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    "damage",
    [
        lambda raw: raw.pop("temperature"),
        lambda raw: raw["model_config"].update(depth=3),
        lambda raw: raw["state_dict"].update({"classifier.2.weight": torch.zeros(3, 3)}),
    ],
    ids=["missing key", "unknown config field", "wrong weight shape"],
)
def test_a_damaged_checkpoint_raises_checkpoint_error(trained_checkpoint, tmp_path, damage):
    raw = torch.load(trained_checkpoint, map_location="cpu", weights_only=True)
    damage(raw)
    path = tmp_path / "damaged.pt"
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match="does not describe a usable model"):
        load_checkpoint(path)


def test_evaluate_cli_writes_report_plots_and_records_them(trained_checkpoint, examples_dir, tmp_path, capsys):
    checkpoint = tmp_path / "tiny.pt"
    shutil.copy(trained_checkpoint, checkpoint)
    args = ["--data", str(examples_dir), "--checkpoint", str(checkpoint), "--split", "all", "--tta"]
    assert evaluate_main([*args, "--out", str(tmp_path / "reports"), "--record"]) == 0
    printed = capsys.readouterr().out
    assert "BMA" in printed and "confusion matrix" in printed
    report = json.loads((tmp_path / "reports" / "tiny_all_tta.json").read_text())["sets"]["all"]
    assert report["n"] == 14
    assert set(report["per_class"]) == set(CLASS_CODES)
    assert sum(map(sum, report["confusion_matrix"])) == 14
    for plot in ("tiny_all_tta_all_confusion.png", "tiny_all_tta_all_reliability.png"):
        assert (tmp_path / "reports" / plot).read_bytes().startswith(b"\x89PNG")
    recorded = load_checkpoint(checkpoint).meta["metrics"]["evaluation"]["all_tta"]
    assert recorded["balanced_accuracy"] == report["balanced_accuracy"]


def test_evaluate_cli_compares_with_a_baseline_on_the_same_images(trained_checkpoint, examples_dir, tmp_path, capsys):
    args = ["--data", str(examples_dir), "--checkpoint", str(trained_checkpoint), "--split", "all"]
    assert evaluate_main([*args, "--baseline", str(trained_checkpoint), "--out", str(tmp_path)]) == 0
    assert "+0.000 (+0.000..+0.000) no clear diff." in capsys.readouterr().out
    report = json.loads((tmp_path / f"{trained_checkpoint.stem}_all.json").read_text())["sets"]["all"]
    assert report["baseline"]["balanced_accuracy"] == report["balanced_accuracy"]


def test_evaluate_cli_refuses_a_baseline_validated_on_another_split(trained_checkpoint, examples_dir, tmp_path, capsys):
    raw = torch.load(trained_checkpoint, map_location="cpu", weights_only=True)
    raw["data"]["split_seed"] += 1
    other = tmp_path / "other.pt"
    torch.save(raw, other)
    args = ["--data", str(examples_dir), "--checkpoint", str(trained_checkpoint), "--baseline", str(other)]
    with pytest.raises(SystemExit):
        evaluate_main([*args, "--out", str(tmp_path)])
    assert "validated on another split" in capsys.readouterr().err


def test_a_model_ensembled_with_itself_scores_as_the_model(trained_checkpoint, examples_dir):
    alone = evaluate_checkpoint(data=examples_dir, checkpoint=trained_checkpoint, split="all")["sets"]["all"]
    twice = evaluate_checkpoint(
        data=examples_dir, checkpoint=trained_checkpoint, split="all", ensemble=[trained_checkpoint]
    )["sets"]["all"]
    assert twice["confusion_matrix"] == alone["confusion_matrix"]
    for key in ("balanced_accuracy", "ece", "macro_auc"):  # the ECE only if the average is divided
        assert twice[key] == pytest.approx(alone[key], abs=1e-6), key


def test_evaluate_cli_refuses_to_record_an_ensemble(trained_checkpoint, examples_dir, tmp_path, capsys):
    args = ["--data", str(examples_dir), "--checkpoint", str(trained_checkpoint), "--split", "all"]
    with pytest.raises(SystemExit):
        evaluate_main([*args, "--ensemble", str(trained_checkpoint), "--record", "--out", str(tmp_path)])
    assert "an ensemble's are not that checkpoint's" in capsys.readouterr().err


def test_distillation_loss_is_hintons_soft_target_loss():
    torch.manual_seed(0)
    student = torch.randn(5, 7, requires_grad=True)
    teacher = torch.randn(5, 7)
    t = 2.0
    loss = distillation_loss(student, teacher, temperature=t)
    p, q = torch.softmax(teacher / t, dim=1), torch.softmax(student / t, dim=1)
    expected = t**2 * (p * (p.log() - q.log())).sum(dim=1).mean()  # T² · KL(teacher ‖ student)
    torch.testing.assert_close(loss, expected)
    (gradient,) = torch.autograd.grad(loss, student)
    torch.testing.assert_close(gradient, t * (q - p).detach() / 5)
    assert distillation_loss(teacher.clone(), teacher, temperature=t).item() == pytest.approx(0.0, abs=1e-6)


def test_a_student_learns_from_its_teacher(examples_dir, tmp_path, teacher_checkpoint):
    config = TrainConfig(epochs=1, batch_size=4)
    train(data=examples_dir, out=tmp_path / "plain.pt", config=config)
    train(data=examples_dir, out=tmp_path / "student.pt", config=config, teacher=teacher_checkpoint)
    plain = torch.load(tmp_path / "plain.pt", map_location="cpu", weights_only=True)
    student = torch.load(tmp_path / "student.pt", map_location="cpu", weights_only=True)
    assert student["training"]["teacher"] == str(teacher_checkpoint)
    assert plain["training"]["teacher"] is None
    # Same seed, same draws: only the teacher's soft targets can make the weights differ.
    assert any(not torch.equal(plain["state_dict"][k], v) for k, v in student["state_dict"].items())


def test_a_student_trained_only_on_soft_targets_moves_towards_its_teacher(examples_dir, tmp_path, teacher_checkpoint):
    config = TrainConfig(epochs=3, batch_size=4, lr=3e-3, warmup_epochs=0, distill_weight=1.0)
    train(data=examples_dir, out=tmp_path / "plain.pt", config=config)
    train(data=examples_dir, out=tmp_path / "student.pt", config=config, teacher=teacher_checkpoint)
    teacher = load_checkpoint(teacher_checkpoint)
    x = torch.stack([Predictor(teacher_checkpoint).read(p.read_bytes()) for p in sorted(examples_dir.glob("**/*.jpg"))])
    with torch.no_grad():
        target = torch.log_softmax(predict_logits(teacher.model, x, preprocess=teacher.preprocess), dim=1)

    def divergence(path):
        loaded = load_checkpoint(path)
        logits = predict_logits(loaded.model, x, preprocess=loaded.preprocess)
        return float(F.kl_div(torch.log_softmax(logits, dim=1), target, log_target=True, reduction="batchmean"))

    assert divergence(tmp_path / "student.pt") < divergence(tmp_path / "plain.pt")


def test_with_a_teacher_the_loss_mixes_in_the_soft_targets():
    torch.manual_seed(0)
    teacher = torch.nn.Linear(4, 7)
    x, logits, hard = torch.randn(5, 4), torch.randn(5, 7), torch.tensor(1.3)
    mixed = with_teacher(hard, logits, x, teacher=teacher, weight=0.25, temperature=2.0)
    with torch.no_grad():
        expected = 0.75 * hard + 0.25 * distillation_loss(logits, teacher(x), temperature=2.0)
    assert mixed == pytest.approx(float(expected))


def test_the_pretrained_teacher_fine_tunes_with_frozen_early_blocks(examples_dir, tmp_path):
    out = tmp_path / "teacher.pt"
    config = TrainConfig(epochs=1, batch_size=4, arch="EfficientNetLite0", pretrained=True, frozen_blocks=3)
    train(data=examples_dir, out=out, config=config)
    loaded = load_checkpoint(out)
    assert isinstance(loaded.model, EfficientNetLite0)
    assert fold_for_inference(loaded.model) is loaded.model  # only SimpleBNConv is folded
    imagenet = EfficientNetLite0()
    load_imagenet_weights(imagenet)
    trained, start = loaded.model.state_dict(), imagenet.state_dict()
    frozen = ("_conv_stem.", "_bn0.", "_blocks.0.", "_blocks.1.", "_blocks.2.")
    for name, tensor in start.items():
        if name.startswith(frozen):  # weights and BatchNorm statistics as ImageNet left them
            torch.testing.assert_close(trained[name], tensor, msg=name)
    assert not torch.equal(trained["_blocks.3._depthwise_conv.weight"], start["_blocks.3._depthwise_conv.weight"])
    assert not torch.equal(trained["_blocks.3._bn1.running_mean"], start["_blocks.3._bn1.running_mean"])
    assert loaded.meta["training"]["pretrained"] is True


@pytest.mark.parametrize(
    ("change", "message"),
    [({"pretrained": True}, "are for EfficientNetLite0, not SimpleBNConv"), ({"frozen_blocks": 2}, "are for")],
)
def test_pretraining_options_are_refused_for_the_student(examples_dir, tmp_path, change, message):
    with pytest.raises(ValueError, match=message):
        train(data=examples_dir, out=tmp_path / "x.pt", config=TrainConfig(epochs=1, **change))


def test_a_teacher_with_other_preprocessing_is_refused(examples_dir, tmp_path):
    teacher = tmp_path / "teacher.pt"
    save_checkpoint(teacher, model=EfficientNetLite0(), preprocess=PreprocessConfig(colour_constancy="none"))
    with pytest.raises(CheckpointError, match="was trained on .*colour_constancy='none'"):
        train(data=examples_dir, out=tmp_path / "student.pt", config=TrainConfig(epochs=1), teacher=teacher)


def test_resuming_with_another_recipe_is_refused(trained_checkpoint, examples_dir, tmp_path, teacher_checkpoint):
    out = tmp_path / "tiny.pt"
    shutil.copy(trained_checkpoint, out)
    shutil.copy(trained_checkpoint.with_suffix(".state.pt"), out.with_suffix(".state.pt"))
    config = TrainConfig(epochs=3, batch_size=4, seed=0)
    with pytest.raises(CheckpointError, match="continues a run of .*'distilled': False"):
        train(data=examples_dir, out=out, config=config, resume=True, teacher=teacher_checkpoint)


def test_init_from_another_architecture_is_refused(examples_dir, tmp_path, teacher_checkpoint):
    with pytest.raises(CheckpointError, match="holds architecture EfficientNetLite0, not SimpleBNConv"):
        train(data=examples_dir, out=tmp_path / "x.pt", config=TrainConfig(epochs=1), init=teacher_checkpoint)


def test_a_teacher_checkpoint_is_served_with_probabilities_and_grad_cam(teacher_checkpoint, example_image):
    predictor = Predictor(teacher_checkpoint)
    pixels = predictor.read(example_image)
    assessment = predictor.assess(pixels.unsqueeze(0))
    torch.testing.assert_close(assessment.probabilities.sum(dim=1), torch.ones(1))
    torch.testing.assert_close(assessment.probabilities, predictor.probabilities(pixels.unsqueeze(0)))
    explanation = predictor.explain(pixels, target=int(assessment.probabilities.argmax()))
    assert explanation.overlay.shape == pixels.shape and explanation.overlay.dtype == torch.uint8


def test_out_is_written_only_once_calibrated(examples_dir, tmp_path, monkeypatch):
    from ml import train as train_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    out = tmp_path / "run.pt"
    monkeypatch.setattr(train_module, "fit_temperature", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(data=examples_dir, out=out, config=TrainConfig(epochs=1, batch_size=4, seed=0))
    assert not out.exists()  # no uncalibrated model where a calibrated one is expected
    assert "best_weights" in torch.load(out.with_suffix(".state.pt"), weights_only=True)
    monkeypatch.undo()
    train(data=examples_dir, out=out, config=TrainConfig(epochs=1, batch_size=4, seed=0), resume=True)
    assert load_checkpoint(out).temperature != 1.0
    assert not list(tmp_path.glob("*.partial"))  # written through a temporary file, then renamed

"""What was scored is what serves: one preprocessing path, the folded model, the EMA's BatchNorm
statistics, Grad-CAM by its definition, and the training command line."""

import pytest
import torch
import torch.nn.functional as F

from ml.data import load_pixels, read_samples
from ml.explain import grad_cam
from ml.inference import Predictor
from ml.model import SimpleBNConv, fold_for_inference
from ml.preprocessing import PreprocessConfig, normalize
from ml.train import build_parser, main, recompute_batch_norm


def test_training_and_serving_prepare_an_image_identically(trained_checkpoint, examples_dir):
    predictor = Predictor(trained_checkpoint)
    samples = read_samples(examples_dir)
    trained_on = load_pixels(samples, preprocess=predictor.preprocess, progress=False)
    served = torch.stack([predictor.read(s.path.read_bytes(), guard=True) for s in samples])
    assert torch.equal(trained_on, served)


def test_the_folded_model_is_what_serves_and_answers_like_the_trained_one(trained_checkpoint, examples_dir):
    predictor = Predictor(trained_checkpoint)
    assert predictor.inference_model is not predictor.model
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in predictor.inference_model.modules())
    pixels = torch.stack([predictor.read(s.path.read_bytes()) for s in read_samples(examples_dir)])
    x = normalize(pixels, preprocess=predictor.preprocess).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        expected = F.softmax(predictor.model(x) / predictor.temperature, dim=1)
    assert torch.allclose(predictor.assess(pixels).probabilities, expected, atol=1e-5)


@pytest.mark.slow  # trains
def test_averaged_weights_get_batchnorm_statistics_of_their_own_activations():
    # The EMA's BatchNorm statistics once averaged the initial values in, which made the EMA's
    # validation scores meaningless: they must be the activations' own, recomputed.
    torch.manual_seed(0)
    model = SimpleBNConv().train()
    pixels = torch.randint(0, 256, (64, 3, 224, 224), dtype=torch.uint8)
    recompute_batch_norm(model, pixels, preprocess=PreprocessConfig(), seed=0, images=64)
    first_norm = model.features[2]
    torch.manual_seed(0)  # the same augmentation draws as inside recompute_batch_norm
    from ml.augment import augment

    index = torch.randperm(64, generator=torch.Generator().manual_seed(0))
    x = normalize(augment(pixels[index]), preprocess=PreprocessConfig())
    with torch.no_grad():
        activations = model.features[1](model.features[0](x))
    assert torch.allclose(first_norm.running_mean, activations.mean(dim=(0, 2, 3)), rtol=0.05, atol=0.05)
    assert first_norm.running_mean.abs().sum() > 0  # not the initial zeros


def test_grad_cam_is_the_gradient_weighted_sum_of_the_last_block_activations():
    torch.manual_seed(0)
    model = SimpleBNConv().eval()
    x = torch.randn(1, 3, 224, 224)
    captured = {}
    last_block = model.features[-2]  # the last block, before its pooling
    hook = last_block.register_forward_hook(lambda m, i, out: captured.setdefault("a", out))
    logits = model(x)
    hook.remove()
    activations = captured["a"]
    (gradients,) = torch.autograd.grad(logits[0, 3], activations)
    weights = gradients.mean(dim=(2, 3), keepdim=True)
    expected = F.relu((weights * activations).sum(dim=1, keepdim=True))
    expected = F.interpolate(expected, size=(224, 224), mode="bilinear", align_corners=False)[0, 0]
    expected = expected / expected.max()
    assert torch.allclose(grad_cam(model, x, target=3), expected.detach(), atol=1e-5)


def test_the_training_command_line(examples_dir, tmp_path):
    out = tmp_path / "cli.pt"
    assert main(["--data", str(examples_dir), "--out", str(out), "--epochs", "1", "--batch-size", "4"]) == 0
    assert out.exists()
    args = build_parser().parse_args(["--data", "a", "--data", "b", "--out", "x.pt", "--resolution-low", "84"])
    assert [str(p) for p in args.data] == ["a", "b"]
    assert args.resolution_low == 84


def test_the_training_command_line_reports_a_missing_folder_as_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--data", str(tmp_path / "missing"), "--out", str(tmp_path / "x.pt")])
    assert exit_info.value.code == 2
    assert "does not exist" in capsys.readouterr().err


def test_fold_keeps_logits(trained_checkpoint):
    model = Predictor(trained_checkpoint).model
    x = torch.randn(2, 3, 224, 224).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        assert torch.allclose(fold_for_inference(model)(x), model(x), atol=1e-4)

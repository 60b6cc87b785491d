import pytest
import torch

from ml import CLASS_CODES
from ml.model import MaxPool2x2, ModelConfig, SimpleBNConv, fold_for_inference


def test_output_shape_and_no_nan():
    torch.manual_seed(0)
    model = SimpleBNConv().eval()
    logits = model(torch.randn(2, 3, 224, 224))
    assert logits.shape == (2, len(CLASS_CODES))
    assert torch.isfinite(logits).all()


def test_parameter_count_matches_the_original():
    model = SimpleBNConv(ModelConfig())
    assert sum(p.numel() for p in model.parameters()) == 142_791


def test_gradient_reaches_every_parameter():
    torch.manual_seed(0)
    model = SimpleBNConv().train()
    loss = torch.nn.functional.cross_entropy(model(torch.randn(4, 3, 224, 224)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


@pytest.mark.parametrize("shape", [(2, 8, 224, 224), (1, 3, 7, 7), (3, 5, 14, 9)])
def test_max_pool_matches_torch(shape):
    x = torch.randn(shape)
    x[x < 0] = 0  # ties, as after ReLU
    torch.testing.assert_close(MaxPool2x2()(x), torch.nn.functional.max_pool2d(x, 2), rtol=0, atol=0)
    channels_last = x.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(MaxPool2x2()(channels_last), torch.nn.functional.max_pool2d(x, 2), rtol=0, atol=0)


def _trained_like(seed: int) -> SimpleBNConv:
    """A model with BatchNorm statistics and affine terms away from their initial values."""
    torch.manual_seed(seed)
    model = SimpleBNConv()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.weight.data.uniform_(0.2, 2.0)
            module.bias.data.normal_(0, 0.5)
            module.running_mean.normal_(0, 0.5)
            module.running_var.uniform_(0.1, 3.0)
    return model.eval()


def test_folded_model_gives_the_same_logits():
    model = _trained_like(0)
    folded = fold_for_inference(model)
    assert folded is not model
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    x = torch.randn(3, 3, 224, 224).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-4)


def test_folding_is_refused_where_it_would_not_be_exact():
    model = _trained_like(1)
    model.features[2].weight.data[0] = -0.5  # a negative BatchNorm scale turns max-pooling into min-pooling
    assert fold_for_inference(model) is model

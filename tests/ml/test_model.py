import pytest
import torch

from ml import CLASS_CODES
from ml.model import MaxPool2x2, ModelConfig, SimpleBNConv


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

import pytest
import torch

from ml.checkpoint import save_checkpoint
from ml.efficientnet import EfficientNetConfig, EfficientNetLite0
from ml.preprocessing import PreprocessConfig
from ml.train import TrainConfig, train
from tests.conftest import EXAMPLES


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory):
    """A SimpleBNConv trained for two epochs on the 14 committed examples (a few seconds)."""
    out = tmp_path_factory.mktemp("run") / "tiny.pt"
    train(data=EXAMPLES, out=out, config=TrainConfig(epochs=2, batch_size=4, seed=0))
    return out


@pytest.fixture(scope="session")
def teacher_checkpoint(tmp_path_factory):
    """An untrained teacher: what distillation does with its outputs does not depend on its skill."""
    path = tmp_path_factory.mktemp("teacher") / "teacher.pt"
    torch.manual_seed(1)
    save_checkpoint(path, model=EfficientNetLite0(EfficientNetConfig(input_size=32)), preprocess=PreprocessConfig())
    return path

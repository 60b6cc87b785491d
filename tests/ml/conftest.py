import pytest

from ml.train import TrainConfig, train
from tests.conftest import EXAMPLES


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory):
    """A SimpleBNConv trained for two epochs on the 14 committed examples (a few seconds)."""
    out = tmp_path_factory.mktemp("run") / "tiny.pt"
    train(data=EXAMPLES, out=out, config=TrainConfig(epochs=2, batch_size=4, seed=0))
    return out

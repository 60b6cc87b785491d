"""`make bench` keeps working: the latency benchmark runs both pipelines and writes its report.
Timings are not asserted; they are measurements, quoted in docs/benchmarks.md."""

import json

import pytest
import torch

from benchmarks import common, latency

pytestmark = pytest.mark.slow  # runs the benchmark, briefly


def test_latency_benchmark_times_both_pipelines_on_both_images(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    threads = torch.get_num_threads()
    try:
        report = latency.main(["--repeats", "2"])
    finally:
        torch.set_num_threads(threads)
    rows = report["results"]
    assert set(rows) == set(latency.SIZES)
    for row in rows.values():
        assert row["ours"]["n"] == row["original"]["n"] == 2
        assert len(row["ours_stages_median_ms"]) == 5
    assert len(report["model_alone_median_ms"]) == 4
    report = json.loads((tmp_path / "latency.json").read_text())
    assert report["repeats"] == 2 and set(report["results"]) == set(latency.SIZES)


def test_the_baseline_is_the_demos_module_with_our_weights():
    """The comparison is fair: the demo's module (nn.MaxPool2d, NCHW) computes what ours computes."""
    from ml import SHIPPED_CHECKPOINT
    from ml.inference import Predictor

    predictor = Predictor(SHIPPED_CHECKPOINT)
    original = latency.original_model(predictor.model)
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        assert torch.allclose(original(x), predictor.model(x.contiguous(memory_format=torch.channels_last)), atol=1e-5)


def test_an_opt_in_model_is_timed_against_the_demo_and_reported_apart(tmp_path, monkeypatch):
    """``--checkpoint`` times the model a site would serve (here a small EfficientNet-Lite0) against the
    demo's SimpleBNConv pipeline, and writes its own report beside the shipped model's."""
    from ml.checkpoint import save_checkpoint
    from ml.efficientnet import EfficientNetConfig, EfficientNetLite0
    from ml.preprocessing import PreprocessConfig

    monkeypatch.setattr(common, "RESULTS", tmp_path)
    checkpoint = tmp_path / "accurate.pt"
    save_checkpoint(
        checkpoint, model=EfficientNetLite0(EfficientNetConfig(input_size=64)), preprocess=PreprocessConfig()
    )
    threads = torch.get_num_threads()
    try:
        report = latency.main(["--repeats", "1", "--checkpoint", str(checkpoint)])
    finally:
        torch.set_num_threads(threads)
    assert len(report["model_alone_median_ms"]) == 4
    assert json.loads((tmp_path / "latency-accurate.json").read_text())["checkpoint"] == "accurate.pt"
    assert not (tmp_path / "latency.json").exists()

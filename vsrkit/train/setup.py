"""The parts the reference recipe builds before its loop: data, network, optimizer, loop core.

Each function takes the run's settings (``TrainConfig``) and plain values and returns built
objects; the recipe (:mod:`vsrkit.train.recipe`) calls them in order.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from vsrkit.adaptive import AdaptiveLossWeights, GradClipAdapter, LRBoostPolicy, PlateauTracker
from vsrkit.checkpoint import AnyOf, standard_retention
from vsrkit.loop import LoopCore, ScheduledLR
from vsrkit.train.config import TrainConfig
from vsrkit.train.data import CachedClips, EpochBatchSampler, SeededSamples
from vsrkit.train.distributed import DistContext
from vsrkit.train.errors import InitWeightsError, TrainConfigError
from vsrkit.train.schedule import WarmupCosine
from vsrkit.vsr import BidirectionalRecurrentVSR, build_dataset, build_model

__all__ = [
    "MAX_NONFINITE_STREAK",
    "TERMS",
    "build_batches",
    "build_datasets",
    "build_loop",
    "build_network",
    "build_optimizer",
    "init_weights",
    "place_network",
    "retention",
    "worker_message",
]

logger = logging.getLogger("vsrkit.train")

TERMS = ("l1", "ms", "grad", "perceptual")
MAX_NONFINITE_STREAK = 5  # this many non-finite steps in a row end the run
CACHE_LIMIT_BYTES = 2 << 30  # synthetic clips are kept in memory up to this size


def build_datasets(cfg: TrainConfig, ctx: DistContext) -> tuple[Any, Any]:
    """``(train set, validation set)``; fixed synthetic clips are generated once and kept.

    Raises:
        TrainConfigError: Fewer training clips than one batch on each process.
    """
    lr_size = cfg.crop_size // cfg.scale
    train_set: Any
    val_set: Any
    train_set, val_set = [
        build_dataset(
            cfg.data,
            split=split,
            num_frames=cfg.num_frames,
            lr_size=lr_size,
            num_clips=clips,
            scale=cfg.scale,
            degradation=cfg.degradation,
            seed=cfg.seed,
            val_clips=cfg.val_clip_name_list(),
        )
        for split, clips in (("train", cfg.train_clips), ("val", cfg.val_clips))
    ]
    synthetic = cfg.data in (None, "synthetic")
    if len(train_set) < cfg.batch_size * ctx.world_size:
        where = "the synthetic data (train_clips)" if synthetic else f"--data {cfg.data}"
        raise TrainConfigError(
            f"{where} has {len(train_set)} training clip(s), fewer than one batch of "
            f"{cfg.batch_size} (--batch-size) on each of {ctx.world_size} process(es)"
        )
    clip_bytes = 4 * 3 * cfg.num_frames * (lr_size**2 + cfg.crop_size**2)
    if synthetic and clip_bytes * (cfg.train_clips + cfg.val_clips) <= CACHE_LIMIT_BYTES:
        return CachedClips(train_set), CachedClips(val_set)
    return train_set, val_set


def build_network(cfg: TrainConfig, *, init: bool) -> tuple[Any, str | None]:
    """The reference model of ``cfg`` on the CPU, and (with ``init`` and ``--init-weights``)
    the line that says what it was initialised from."""
    net = build_model(
        cfg.model,
        num_feat=cfg.n_feats,
        num_blocks=cfg.n_blocks,
        spynet_weights=cfg.spynet_weights,
        skip=cfg.skip,
    )
    note = None
    if init and cfg.init_weights is not None:  # fine-tuning a published model
        note = init_weights(net, cfg.init_weights)
    return net, note


def place_network(net: Any, cfg: TrainConfig, ctx: DistContext) -> tuple[Any, Any, Any]:
    """``(net, model, forward)``: the network on the run's device (channels-last if asked),
    the model the step trains (DDP-wrapped under torchrun) and its (compiled) forward."""
    dev = ctx.device
    net = net.to(dev)
    if cfg.channels_last:
        net = net.to(memory_format=torch.channels_last)
    model: torch.nn.Module = net
    if ctx.distributed:
        model = torch.nn.parallel.DistributedDataParallel(
            net,
            device_ids=[dev.index] if dev.type == "cuda" else None,
            find_unused_parameters=False,
        )
    return net, model, torch.compile(model) if cfg.compile else model


def build_batches(
    cfg: TrainConfig, ctx: DistContext, train_set: Any, start: int
) -> tuple[EpochBatchSampler, Iterator[Any]]:
    """The batch sampler (this rank's share of each epoch, from step ``start`` on) and the
    iterator of batches."""
    sampler = EpochBatchSampler(
        len(train_set),
        cfg.batch_size,
        seed=cfg.seed,
        rank=ctx.rank,
        world_size=ctx.world_size,
        start_step=start,
    )
    loader = DataLoader(
        SeededSamples(train_set, cfg.seed),
        batch_sampler=sampler,
        num_workers=cfg.num_workers,
        pin_memory=ctx.device.type == "cuda",
        persistent_workers=cfg.num_workers > 0,
    )
    return sampler, iter(loader)


def build_optimizer(cfg: TrainConfig, net: Any) -> torch.optim.AdamW:
    """AdamW (fused) with two groups: the network at ``lr``, SpyNet at ``lr * flow_lr_mult``."""
    flow_params = list(net.spynet.parameters())
    flow_ids = {id(p) for p in flow_params}
    main_params = [p for p in net.parameters() if id(p) not in flow_ids]
    return torch.optim.AdamW(
        [
            {"params": main_params, "lr": cfg.lr},
            {"params": flow_params, "lr": cfg.lr * cfg.flow_lr_mult},
        ],
        lr=cfg.lr,
        betas=(0.9, 0.99),
        weight_decay=cfg.weight_decay,
        fused=True,
    )


def build_loop(
    cfg: TrainConfig,
    run_dir: Path,
    live: dict[str, Any],
    optimizer: torch.optim.Optimizer,
    schedule: WarmupCosine,
) -> LoopCore:
    """The loop core with the recipe's components, built from the live settings ``live``
    (every runtime key: this invocation's, or on resume the snapshot's with the flags on top)."""
    return LoopCore(
        run_dir=run_dir,
        terms=TERMS,
        log_every=live["log_every"],
        cadence={"val_every": live["val_every"], "ckpt_every": live["ckpt_every"]},
        plateau=PlateauTracker(
            patience=live["plateau_patience"],
            cooldown=live["cooldown_duration"],
            safety_steps=live["plateau_safety_threshold"],
        ),
        lr_policy=None
        if cfg.lr_policy == "off"
        else LRBoostPolicy(
            mode=cfg.lr_policy,
            max_lr=live["max_lr"],
            min_lr=live["min_lr"],
            cooldown=live["cooldown_duration"],
        ),
        loss_weights=AdaptiveLossWeights(
            TERMS,
            mode="plateau",
            cooldown=live["cooldown_duration"],
            initial={t: live[f"{t}_weight"] for t in TERMS},
        ),
        clip=GradClipAdapter(initial=live["grad_clip"]),
        lr=ScheduledLR(optimizer, schedule, factors=[1.0, cfg.flow_lr_mult]),
        runtime_config=live,
        tensorboard=cfg.tensorboard,
        max_nonfinite_streak=MAX_NONFINITE_STREAK,
    )


def retention(cfg: TrainConfig) -> AnyOf:
    """Each kind by its own rule: ``--keep-last`` regular, the best by SSIM, the newest
    emergency, and the one a resume would pick (:func:`~vsrkit.checkpoint.standard_retention`)."""
    return standard_retention(cfg.keep_last)


def init_weights(net: BidirectionalRecurrentVSR, path: str) -> str:
    """Load ``path`` (a published BasicVSR or a vsrkit checkpoint) into ``net``; one line says
    what was loaded. Raises a :class:`InitWeightsError` when it is another network or size."""
    from vsrkit.infer.loading import read_weights

    weights = read_weights(path)  # one read; the sizes come from the file, not a second model
    arch = weights.architecture
    got = {
        "num_feat": arch["num_feat"],
        "num_blocks": arch["num_blocks"],
        "skip": arch.get("skip", "bicubic"),
        "spynet_levels": arch["spynet_levels"],
    }
    want = {
        "num_feat": net.num_feat,
        "num_blocks": net.num_blocks,
        "skip": net.skip,
        "spynet_levels": net.spynet.num_levels,
    }
    if want != got:
        shown = ", ".join(f"{k} {v}" for k, v in got.items())
        built = ", ".join(f"{k} {v}" for k, v in want.items())
        raise InitWeightsError(
            f"--init-weights {path}: a {weights.preset or 'vsrkit'} model with {shown}; this run "
            f"builds {built} (choose --model, --skip, n_feats/n_blocks to match)"
        )
    try:
        net.load_state_dict(weights.state_dict)
    except RuntimeError as exc:  # same sizes, another SpyNet width
        raise InitWeightsError(
            f"--init-weights {path} does not fit this run's model: {str(exc).splitlines()[0]}"
        ) from None
    kind = (
        f"a {weights.preset}"
        if weights.config is None
        else f"the {weights.preset} model of step {weights.step}"
    )
    return (
        f"initialised the model from {path} ({kind}); the optimizer, the LR schedule and the "
        "adaptive components start fresh"
    )


def worker_message(exc: BaseException) -> str:
    """The original message of a data error, also when a DataLoader worker re-raised it with
    the worker's traceback folded into the text.

    Example:
        >>> worker_message(ValueError("Traceback (most recent call last):\\n  ...\\nX: bad"))
        'bad'
    """
    text = str(exc)
    if "Traceback (most recent call last)" not in text:
        return text
    last = [ln for ln in text.strip().splitlines() if ln.strip()][-1]
    return last.split(": ", 1)[1] if ": " in last else last

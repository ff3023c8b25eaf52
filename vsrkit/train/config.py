"""The startup configuration of ``vsrkit train``: a frozen dataclass built from a preset, an
optional JSON/TOML file and command-line flags (later sources win).

Settings that may change while a run goes on (learning-rate bounds, plateau patience, loss
weights, grad clip) start here and are then owned by the run's ``runtime_config.json``
(see :mod:`vsrkit.config`).

Each setting remembers where its value came from (:meth:`TrainConfig.origin`): a resumed run
takes every setting the user did not give from its checkpoint (see :mod:`vsrkit.train.resume`).

Example:
    >>> cfg = TrainConfig.from_sources(preset="quick", overrides={"steps": 10})
    >>> cfg.steps, cfg.model, cfg.origin("steps"), cfg.origin("lr")
    (10, 'tiny', 'command line', 'default')
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vsrkit.train.errors import InitWeightsError, TrainConfigError

__all__ = [
    "ORIGINS",
    "PRESETS",
    "PROCESS_KEYS",
    "TrainConfig",
    "InitWeightsError",
    "TrainConfigError",
    "load_config_file",
]

#: Where a setting's value came from, in increasing priority for a new run.
ORIGINS = ("default", "preset", "config file", "command line")

#: Settings that say how this process runs, not what the run trains: a resumed run takes them
#: from this invocation, never from the checkpoint.
PROCESS_KEYS = frozenset(
    {
        "run_dir",
        "mirror_dir",
        "resume",
        "device",
        "amp",
        "channels_last",
        "compile",
        "threads",
        "num_workers",
        "tensorboard",
        "monitor",
        "monitor_host",
        "monitor_port",
        "allow_remote_monitor",
        "terminal_view",
        "init_weights",  # starts a new run's weights; a resumed run's come from its checkpoint
    }
)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Every startup setting of the reference recipe. Build it with :meth:`from_sources`."""

    preset: str = "quick"
    # data
    data: str | None = None  # None or "synthetic": the built-in clips; else a REDS/Vimeo folder
    val_clip_names: str | None = None  # REDS-style folders: comma-separated clips (None: REDS4)
    degradation: str = "BI"
    scale: int = 4
    num_frames: int = 5
    crop_size: int = 64  # ground-truth crop size in pixels (LR patch = crop_size / scale)
    batch_size: int = 4
    num_workers: int = 0
    train_clips: int = 64
    val_clips: int = 2
    seed: int = 0
    # model
    model: str = "tiny"
    n_feats: int | None = None
    n_blocks: int | None = None
    spynet_weights: str | None = None  # local SpyNet file (BasicSR or mmagic as published)
    skip: str = "bicubic"  # skip connection: bicubic, or bilinear (BasicSR's BasicVSR exactly)
    init_weights: str | None = None  # start from a published BasicVSR or a vsrkit checkpoint
    perceptual: str | None = "random"
    # optimisation
    steps: int = 600
    lr: float = 4e-4
    flow_lr_mult: float = 0.125
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    min_lr: float = 1e-6
    max_lr: float = 8e-4
    grad_clip: float = 1.0
    lr_policy: str = "boost"
    # adaptive / runtime-tunable starting values
    plateau_patience: int = 200
    plateau_safety_threshold: int = 1000
    cooldown_duration: int = 50
    l1_weight: float = 0.6
    ms_weight: float = 0.2
    grad_weight: float = 0.1
    perceptual_weight: float = 0.1
    # cadence
    log_every: int = 10
    val_every: int = 100
    ckpt_every: int = 200
    keep_last: int = 3
    # hardware
    device: str = "auto"
    amp: str = "bf16"  # used on CUDA only: bf16 | fp16 (with GradScaler) | off
    # faster on the CPU too, at every model size: a training step took 0.87-0.95x as long
    # as with contiguous tensors (benchmarks/vsr_bench.py --rounds 5, tiny/small/paper)
    channels_last: bool = True
    compile: bool = False
    threads: int | None = None  # CPU threads; None: the free cores (vsrkit.train.threads)
    # outputs
    run_dir: str | None = None
    mirror_dir: str | None = None  # a second folder that gets a copy of every checkpoint
    resume: str | None = None
    tensorboard: bool = True
    monitor: bool = True
    monitor_host: str = "127.0.0.1"
    monitor_port: int = 5050
    allow_remote_monitor: bool = False
    terminal_view: bool = True  # the live panel (and keys v/p/c/q) when stdout is a terminal

    def __post_init__(self) -> None:
        _check_choice("preset", self.preset, PRESETS)
        _check_choice("degradation", self.degradation, ("BI", "BD"))
        _check_choice("model", self.model, ("tiny", "small", "paper"))
        _check_choice("skip", self.skip, ("bicubic", "bilinear"))
        if self.init_weights is not None and self.resume is not None:
            raise TrainConfigError(
                "init_weights (--init-weights) starts a new run from other weights; a resumed "
                "run takes its weights from its checkpoint: leave out one of the two"
            )
        _check_choice("lr_policy", self.lr_policy, ("boost", "reduce", "off"))
        _check_choice("device", self.device, ("auto", "cpu", "cuda"))
        _check_choice("amp", self.amp, ("bf16", "fp16", "off"))
        for name in (
            "steps",
            "batch_size",
            "num_frames",
            "crop_size",
            "log_every",
            "val_every",
            "ckpt_every",
            "keep_last",
            "train_clips",
            "val_clips",
        ):
            if getattr(self, name) < 1:
                raise TrainConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.scale != 4:
            raise TrainConfigError(f"scale must be 4 (the model upsamples x4), got {self.scale}")
        if self.crop_size % self.scale:
            raise TrainConfigError(
                f"crop_size must be a multiple of the scale {self.scale}, got {self.crop_size}"
            )
        if not 0 < self.min_lr <= self.lr <= self.max_lr:
            raise TrainConfigError(
                f"need 0 < min_lr <= lr <= max_lr, got min_lr={self.min_lr}, lr={self.lr}, "
                f"max_lr={self.max_lr}"
            )
        if self.warmup_steps < 0 or self.num_workers < 0:
            raise TrainConfigError("warmup_steps and num_workers must be >= 0")
        if not 0 < self.monitor_port < 65536:
            raise TrainConfigError(f"monitor_port must be 1-65535, got {self.monitor_port}")
        if self.threads is not None and self.threads < 1:
            raise TrainConfigError(f"threads must be >= 1 or 'auto', got {self.threads}")
        if self.val_clip_names is not None and not self.val_clip_name_list():
            raise TrainConfigError(
                f"val_clip_names must name at least one clip folder, got {self.val_clip_names!r}"
            )

    def val_clip_name_list(self) -> tuple[str, ...] | None:
        """``val_clip_names`` split at commas (``None`` when not set)."""
        if self.val_clip_names is None:
            return None
        return tuple(n.strip() for n in self.val_clip_names.split(",") if n.strip())

    def origin(self, key: str) -> str:
        """Where the value of ``key`` came from: one of :data:`ORIGINS`.

        A config built directly (not with :meth:`from_sources`) calls a value that differs
        from the dataclass default ``"command line"`` (given by the caller).
        """
        origins: Mapping[str, str] = getattr(self, "_origins", {})
        if key in origins:
            return origins[key]
        default = _FIELDS[key].default
        return "default" if getattr(self, key) == default else "command line"

    def with_values(self, values: Mapping[str, Any], origins: Mapping[str, str]) -> TrainConfig:
        """A copy with ``values`` replaced (checked like any setting) and their origins set.

        Raises:
            TrainConfigError: On an unknown key or a bad value.
        """
        _check_keys(values, source="resumed settings")
        merged = {**self.to_dict(), **{k: _coerce(k, v) for k, v in values.items()}}
        cfg = type(self)(**merged)
        object.__setattr__(
            cfg, "_origins", {**{k: self.origin(k) for k in _FIELDS}, **dict(origins)}
        )
        return cfg

    @classmethod
    def from_sources(
        cls,
        *,
        preset: str = "quick",
        file: str | Path | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> TrainConfig:
        """Merge a preset, a config file and explicit overrides (in that order).

        Raises:
            TrainConfigError: On an unknown key (with a suggestion), a bad type or value.
        """
        _check_choice("preset", preset, PRESETS)
        values: dict[str, Any] = {"preset": preset, **PRESETS[preset]}
        origins = {k: "preset" for k in values}
        if file is not None:
            from_file = load_config_file(file)
            _check_keys(from_file, source=str(file))
            values.update(from_file)
            origins.update({k: "config file" for k in from_file})
        given = {k: v for k, v in (overrides or {}).items() if v is not None}
        _check_keys(given, source="overrides")
        values.update(given)
        origins.update({k: "command line" for k in given})
        values = {k: _coerce(k, v) for k, v in values.items()}
        cfg = cls(**values)
        object.__setattr__(cfg, "_origins", origins)
        return cfg

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe mapping of every setting (origins are not part of it)."""
        return dataclasses.asdict(self)

    def runtime_initial(self) -> dict[str, Any]:
        """Starting values for the run's :class:`~vsrkit.config.RuntimeConfigManager`."""
        return {
            "plateau_patience": self.plateau_patience,
            "plateau_safety_threshold": self.plateau_safety_threshold,
            "cooldown_duration": self.cooldown_duration,
            "max_lr": self.max_lr,
            "min_lr": self.min_lr,
            "grad_clip": self.grad_clip,
            "l1_weight": self.l1_weight,
            "ms_weight": self.ms_weight,
            "grad_weight": self.grad_weight,
            "perceptual_weight": self.perceptual_weight,
            "val_every": self.val_every,
            "log_every": self.log_every,
            "ckpt_every": self.ckpt_every,
            # startup-only: shown so a user sees them, rejected if edited
            "preset": self.preset,
            "n_feats": self.n_feats,
            "n_blocks": self.n_blocks,
            "batch_size": self.batch_size,
            "scale": self.scale,
            "num_frames": self.num_frames,
            "crop_size": self.crop_size,
            "data": self.data,
            "seed": self.seed,
        }


# Presets give every setting that differs from the dataclass defaults.
PRESETS: dict[str, dict[str, Any]] = {
    # A CPU run of a few minutes on 2 cores that visibly beats bicubic.
    "quick": {},
    # The full model of the BasicVSR family, for a GPU.
    "paper": {
        "model": "paper",
        "steps": 300_000,
        "batch_size": 8,
        "num_frames": 15,
        "crop_size": 256,
        "train_clips": 2048,
        "val_clips": 4,
        "num_workers": 4,
        "lr": 2e-4,
        "max_lr": 4e-4,
        "min_lr": 1e-7,
        "warmup_steps": 2000,
        "plateau_patience": 500,
        "cooldown_duration": 100,
        "log_every": 50,
        "val_every": 5000,
        "ckpt_every": 5000,
        "keep_last": 5,
        "compile": False,
    },
}

_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON or TOML (Python 3.11+) file of startup settings.

    Raises:
        TrainConfigError: If the file is missing, unreadable or not a table of settings.
    """
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise TrainConfigError(f"cannot read config file {p}: {exc.strerror or exc}") from exc
    try:
        if p.suffix.lower() == ".toml":
            if sys.version_info < (3, 11):
                raise TrainConfigError(f"{p}: TOML config files need Python 3.11+; use JSON")
            import tomllib

            doc = tomllib.loads(raw.decode("utf-8"))
        else:
            doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise TrainConfigError(f"{p} is not valid {p.suffix.lstrip('.') or 'JSON'}: {exc}") from exc
    if not isinstance(doc, dict):
        raise TrainConfigError(f"{p} must hold a table of settings, got {type(doc).__name__}")
    return doc


def _check_choice(name: str, value: Any, choices: Any) -> None:
    if value not in choices:
        options = ", ".join(map(str, choices))
        raise TrainConfigError(f"{name} must be one of {options}; got {value!r}")


def _check_keys(values: Mapping[str, Any], *, source: str) -> None:
    for key in values:
        if key not in _FIELDS:
            hint = difflib.get_close_matches(key, _FIELDS, n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise TrainConfigError(f"unknown setting {key!r} in {source}{extra}")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


_TYPE_CHECKS = {
    "bool": lambda v: isinstance(v, bool),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": _is_number,
    "str": lambda v: isinstance(v, str),
}


def _coerce(key: str, value: Any) -> Any:
    """Check a value against the field's annotated type (an int may stand for a float)."""
    if key == "threads" and value == "auto":
        return None
    if key == "val_clip_names" and isinstance(value, (list, tuple)):
        if not all(isinstance(v, str) for v in value):
            raise TrainConfigError(f"val_clip_names must be clip folder names, got {value!r}")
        value = ",".join(value)
    base, _, optional = str(_FIELDS[key].type).partition(" | ")
    if value is None:
        if optional == "None":
            return None
        raise TrainConfigError(f"{key} may not be empty")
    if not _TYPE_CHECKS[base](value):
        raise TrainConfigError(f"{key} must be {base}, got {value!r} ({type(value).__name__})")
    return float(value) if base == "float" else value

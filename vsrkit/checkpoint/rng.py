"""Capture and restore every global RNG for an exact resume, in a ``weights_only``-safe form.

The captured dict holds only tensors, lists, ints, floats, strings and ``None``, so a
checkpoint that contains it loads with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import logging
import random
from typing import Any

from vsrkit._state import check_state

__all__ = ["capture_rng_state", "restore_rng_state"]

logger = logging.getLogger(__name__)

STATE_VERSION = 1


def capture_rng_state() -> dict[str, Any]:
    """Capture python ``random``, numpy's global RNG, torch CPU and (when present) CUDA.

    Returns:
        ``{"version", "python", "numpy", "torch_cpu", "torch_cuda"}``; ``torch_cuda`` is a list
        with one ``uint8`` tensor per device, or ``None`` without CUDA.

    Example:
        >>> import random
        >>> s = capture_rng_state(); a = random.random()
        >>> restore_rng_state(s); random.random() == a
        True
    """
    import numpy as np
    import torch

    py_version, py_internal, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_cached = np.random.get_state(legacy=True)  # type: ignore[misc]
    cuda = None
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        cuda = [t.clone() for t in torch.cuda.get_rng_state_all()]
    return {
        "version": STATE_VERSION,
        "python": {
            "version": int(py_version),
            "internal": torch.tensor(list(py_internal), dtype=torch.int64),
            "gauss_next": None if py_gauss is None else float(py_gauss),
        },
        "numpy": {
            "bit_generator": str(np_name),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64).copy()),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_cached),
        },
        "torch_cpu": torch.get_rng_state().clone(),
        "torch_cuda": cuda,
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`capture_rng_state` captured.

    CUDA states are restored when CUDA is available and the device count matches; otherwise
    a warning says they were skipped.

    Raises:
        StateError: If ``state`` is not a captured RNG state (the message names the key).
    """
    import numpy as np
    import torch

    check_state("RNG", state, STATE_VERSION, ("python", "numpy", "torch_cpu"))
    py = state["python"]
    internal = tuple(int(x) for x in py["internal"].tolist())
    random.setstate((int(py["version"]), internal, py["gauss_next"]))
    npst = state["numpy"]
    keys = np.asarray(npst["keys"].numpy(), dtype=np.uint32)
    np.random.set_state(
        (
            npst["bit_generator"],
            keys,
            int(npst["pos"]),
            int(npst["has_gauss"]),
            float(npst["cached_gaussian"]),
        )
    )
    torch.set_rng_state(state["torch_cpu"].to(torch.uint8).cpu())
    cuda = state.get("torch_cuda")
    if cuda:
        if torch.cuda.is_available() and torch.cuda.device_count() == len(cuda):
            torch.cuda.set_rng_state_all([t.cpu() for t in cuda])
        else:
            logger.warning(
                "RNG state: %d saved CUDA generator(s) not restored (no matching CUDA devices)",
                len(cuda),
            )

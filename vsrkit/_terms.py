"""Loss term -> statistics field: the one map (public as :mod:`vsrkit.stats.fields`).

The loss terms are ``l1``, ``ms``, ``grad`` and ``perceptual`` everywhere in vsrkit; only the
statistics files keep the seed trainer's field names, where the ``grad`` term is written
``gradient`` (``gradient_loss_value``, ``gradient_weight_current``). Any other term ``t`` is
written ``t_loss_value`` / ``t_weight_current``.

Example:
    >>> loss_field("grad"), weight_field("grad"), loss_field("mse")
    ('gradient_loss_value', 'gradient_weight_current', 'mse_loss_value')
"""

from __future__ import annotations

__all__ = ["TERM_FIELD_NAMES", "field_name", "loss_field", "weight_field"]

#: loss term -> the name its statistics fields use (``<name>_loss_value``,
#: ``<name>_weight_current``); a term not listed uses its own name
TERM_FIELD_NAMES: dict[str, str] = {
    "l1": "l1",
    "ms": "ms",
    "grad": "gradient",
    "perceptual": "perceptual",
}


def field_name(term: str) -> str:
    """The name ``term`` has in statistics fields (``grad`` -> ``gradient``)."""
    return TERM_FIELD_NAMES.get(term, term)


def loss_field(term: str) -> str:
    """The statistics field of a loss term's value (``grad`` -> ``gradient_loss_value``)."""
    return f"{field_name(term)}_loss_value"


def weight_field(term: str) -> str:
    """The statistics field of a loss term's weight (``grad`` -> ``gradient_weight_current``)."""
    return f"{field_name(term)}_weight_current"

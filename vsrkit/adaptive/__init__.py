"""vsrkit.adaptive (under construction)."""

"""vsrkit.checkpoint (under construction)."""

"""vsrkit.stats (under construction)."""

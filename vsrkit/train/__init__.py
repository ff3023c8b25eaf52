"""vsrkit.train (under construction)."""

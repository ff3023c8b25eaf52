"""vsrkit.monitor (under construction)."""

"""vsrkit.config (under construction)."""

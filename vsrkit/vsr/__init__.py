"""vsrkit.vsr (under construction)."""

"""LightningModules of tgad, one folder per model."""

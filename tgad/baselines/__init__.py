"""anomalib detectors with resolved backbones: ``tgad.baselines.registry.build_model(name, ...)``."""

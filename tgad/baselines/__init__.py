"""anomalib detectors with resolved backbones (the full registry arrives with the benchmark issue)."""

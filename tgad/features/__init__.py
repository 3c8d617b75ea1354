"""Image features as the detectors see them and synthetic defects: shared by the method and the validation."""

"""tgad: text-guided variational generation of defect-free images for few-shot anomaly detection."""

__version__ = "0.2.0"

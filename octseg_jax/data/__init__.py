"""Data sources. Each returns a ScanSet: uint8 images [N, H, W], uint8 masks or None, meta."""

from octseg_jax.data.scans import ScanSet  # noqa: F401

"""octseg_jax: interpretable retinal layer segmentation of OCT B-scans in JAX/Flax."""

__version__ = "0.1.0"

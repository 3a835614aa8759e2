"""Models. `create_model(config.model)` picks one by name."""

from octseg_jax.models.segnet import SegNet

MODELS = {"segnet": SegNet}


def create_model(model_config, dtype=None):
  """Builds the model named by `model_config.name` with the other fields as arguments."""
  import jax.numpy as jnp
  name = model_config.name
  if name not in MODELS:
    raise ValueError(f"unknown model {name!r}; valid: {sorted(MODELS)}")
  kwargs = {k: v for k, v in model_config.items() if k != "name"}
  for field in ("widths", "kernel"):      # JSON stores tuples as lists
    if field in kwargs:
      kwargs[field] = tuple(kwargs[field])
  if dtype is not None:
    kwargs["dtype"] = jnp.dtype(dtype)
  return MODELS[name](**kwargs)

"""Every model variant and compute dtype trains: one jitted step, and the loss falls over a few
steps on a fixed batch (augmentation off)."""

import jax
import numpy as np
import pytest

from octseg_jax.training import train
from octseg_jax.models import create_model
from octseg_jax.learning.task import Task
from conftest import tiny_config

VARIANTS = {
    "unpool": {},
    "transpose": {"model.upsample": "transpose"},
    "skip": {"model.skip": True},
    "no_batchnorm": {"model.use_batchnorm": False},
    "bfloat16": {"train.compute_dtype": "bfloat16"},
    "tall_kernel": {"model.kernel": (5, 3)},
    "position_channel": {"model.position_channel": True},
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variant_loss_falls_on_a_fixed_batch(variant):
  config = tiny_config(**{"data.augment.flip": False, "data.augment.max_shift": 0,
                          "data.augment.intensity": False, "train.learning_rate": 1e-2,
                          **VARIANTS[variant]})
  model = create_model(config.model, config.train.compute_dtype)
  rng = np.random.default_rng(0)
  x = rng.uniform(size=(4, 16, 16)).astype(np.float32)
  y = (np.arange(16)[None, :, None] // 2 * np.ones((4, 1, 16))).astype(np.uint8)  # 8 bands
  state = train.create_state(config, model, (16, 16), jax.random.key(0))
  step = jax.jit(train.make_train_step(model, Task.from_config(config), config.data.augment))
  losses = []
  for i in range(6):
    state, loss = step(state, x, y, jax.random.key(i))
    losses.append(float(loss))
  assert all(np.isfinite(losses))
  assert losses[-1] < 0.99 * losses[0], losses        # falls by more than 1%

"""Analytic convolution FLOPs of a training step against hand counts and XLA's cost analysis."""

import jax
import jax.numpy as jnp
import pytest

from conftest import tiny_config
from octseg_jax.models import flops
from octseg_jax.training import train
from octseg_jax.models import create_model
from octseg_jax.learning.task import Task


def test_conv_flops_hand_counts():
  conv = flops.Conv((4, 5), (3, 3), 2, 3)
  # Dense: every output pixel (4 x 5) uses all 9 taps; 2 FLOPs per multiply-accumulate.
  assert flops.conv_flops(conv, batch=2) == 2 * 2 * (4 * 5) * 9 * 2 * 3
  # Valid taps of a SAME 3-tap axis of length n: 3n - 2 (one tap off each edge).
  assert flops.conv_flops(conv, batch=2, count_padding=False) == 2 * 2 * 10 * 13 * 2 * 3
  up = flops.Conv((4, 5), (2, 2), 6, 3, transposed=True)     # each input pixel feeds 4 outputs
  assert flops.conv_flops(up, 1) == flops.conv_flops(up, 1, False) == 2 * 20 * 4 * 6 * 3


def test_train_step_is_forward_plus_two_backward_minus_first_input_gradient():
  convs = [flops.Conv((8, 8), (3, 3), 1, 4), flops.Conv((8, 8), (3, 3), 4, 4)]
  f0, f1 = 2 * 64 * 9 * 1 * 4, 2 * 64 * 9 * 4 * 4
  assert flops.train_step_conv_flops(convs, 1) == 3 * (f0 + f1) - f0


def test_segnet_conv_list_matches_the_model_parameters():
  """Every kernel of the model appears once in the analytic list, with its shape."""
  for upsample, skip in (("unpool", False), ("transpose", True)):
    config = tiny_config(**{"model.widths": (4, 8, 16), "model.upsample": upsample,
                            "model.skip": skip})
    m = config.model
    convs = flops.segnet_convs(m.widths, m.num_classes, m.convs_per_block, upsample, skip,
                               (32, 32))
    params = jax.eval_shape(create_model(m, "float32").init, jax.random.key(0),
                            jnp.zeros((1, 32, 32)))["params"]
    kernels = sorted(tuple(leaf.shape) for path, leaf in
                     jax.tree_util.tree_leaves_with_path(params) if "kernel" in str(path[-1]))
    assert sorted(c.kernel + (c.in_channels, c.out_channels) for c in convs) == kernels


@pytest.mark.parametrize("upsample,skip,extra", [
    ("unpool", False, {}), ("transpose", True, {}),
    ("unpool", False, {"model.kernel": (7, 3), "model.position_channel": True})])
def test_analytic_count_matches_xla_cost_analysis_of_the_convolutions(upsample, skip, extra):
  config = tiny_config(**{"model.widths": (4, 8, 16), "model.upsample": upsample,
                          "model.skip": skip, **extra})
  shape, batch = (128, 96), 2
  model = create_model(config.model, "float32")
  # Shapes only: nothing is initialised or run, the step is traced and its convolutions lowered.
  state = jax.eval_shape(lambda k: train.create_state(config, model, shape, k),
                         jax.random.key(0))
  x = jax.ShapeDtypeStruct((batch,) + shape, jnp.float32)
  y = jax.ShapeDtypeStruct((batch,) + shape, jnp.uint8)
  step = train.make_train_step(model, Task.from_config(config), config.data.augment)
  xla = flops.xla_conv_flops(step, state, x, y, jax.random.key(1))
  valid = flops.model_train_step_conv_flops(config.model, batch, shape, count_padding=False)
  dense = flops.model_train_step_conv_flops(config.model, batch, shape)
  assert valid == pytest.approx(xla, rel=1e-9)        # same convention: exact
  assert dense == pytest.approx(xla, rel=0.05)        # the published (dense) count
  assert dense > xla

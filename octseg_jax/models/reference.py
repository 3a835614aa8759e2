"""The plain formulations that the fast layers replace, kept as references for the equality
tests (tests/models/test_blocks.py, tests/models/test_pooling.py) and the A/B benchmark
(benchmarks/ab_layers.py). Not used by training or inference.
"""

import contextlib

import flax.linen as nn
import jax
import jax.numpy as jnp

from octseg_jax.models import blocks, segnet


def argmax_pool(x):
  """2x2 max pool with argmax as a transposed trailing window axis of 4 and jnp.argmax."""
  b, h, w, c = x.shape
  win = x.reshape(b, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 5, 2, 4).reshape(
      b, h // 2, w // 2, c, 4)
  idx = jnp.argmax(win, axis=-1)
  return jnp.take_along_axis(win, idx[..., None], axis=-1)[..., 0], idx.astype(jnp.int8)


def slot_unpool(values, idx):
  """Unpooling through a trailing axis of 4 slots, transposed back to [B, 2h, 2w, C]."""
  b, h, w, c = values.shape
  win = jnp.where(idx[..., None] == jnp.arange(4, dtype=idx.dtype).reshape(1, 1, 1, 1, 4),
                  values[..., None], jnp.zeros((), values.dtype))
  return win.reshape(b, h, w, c, 2, 2).transpose(0, 1, 4, 2, 5, 3).reshape(b, 2 * h, 2 * w, c)


def flax_conv_transpose(features, dtype, name):
  return nn.ConvTranspose(features, (2, 2), strides=(2, 2), dtype=dtype, name=name)


def flax_batchnorm_relu(use_running_average, momentum, dtype, name):
  bn = nn.BatchNorm(use_running_average=use_running_average, momentum=momentum, dtype=dtype,
                    name=name)
  return lambda x: nn.relu(bn(x))


def plain_channel_sum(x):
  return jnp.sum(x, (0, 1, 2), keepdims=True)


# Each rewrite: the (module, attribute, plain formulation) pairs that undo it.
REWRITES = {
    "upconv": ((segnet, "UpConv2x2", flax_conv_transpose),),
    "batchnorm": ((segnet, "BatchNormReLU", flax_batchnorm_relu),),
    "pooling": ((segnet, "max_pool_with_argmax", argmax_pool), (segnet, "max_unpool", slot_unpool)),
    "conv": ((segnet, "conv_general_dilated", jax.lax.conv_general_dilated),),
    "channel_sum": ((blocks, "channel_sum", plain_channel_sum),),
    "init": ((segnet, "lecun_normal", nn.initializers.lecun_normal()),),
}


@contextlib.contextmanager
def plain_segnet(rewrites=tuple(REWRITES)):
  """Within the block, SegNet modules built (and applied) use the plain formulations of the
  named rewrites (default: all of them): same variable names, so the same checkpoints."""
  swaps = [swap for name in rewrites for swap in REWRITES[name]]
  saved = [(module, attr, getattr(module, attr)) for module, attr, _ in swaps]
  for module, attr, plain in swaps:
    setattr(module, attr, plain)
  try:
    yield
  finally:
    for module, attr, value in saved:
      setattr(module, attr, value)

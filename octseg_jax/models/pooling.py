"""2x2 max pooling that records where each maximum came from, and the matching unpooling.

Flax has no max-pool-with-argmax, so the 2x2 windows are reshaped into a trailing axis of 4
(order: top-left, top-right, bottom-left, bottom-right) and reduced there. Ties are broken
towards the first slot in that order (jnp.argmax returns the first maximum), so the recorded
index is deterministic. Values equal flax.linen.max_pool with window and stride 2, and so do
gradients where the window maximum is unique.
"""

from typing import Tuple

import jax
import jax.numpy as jnp


def _windows(x: jax.Array) -> jax.Array:
  """[B, H, W, C] -> [B, H/2, W/2, C, 4]."""
  b, h, w, c = x.shape
  if h % 2 or w % 2:
    raise ValueError(f"max pooling needs even height and width, got {h}x{w}")
  x = x.reshape(b, h // 2, 2, w // 2, 2, c)
  return x.transpose(0, 1, 3, 5, 2, 4).reshape(b, h // 2, w // 2, c, 4)


def max_pool_with_argmax(x: jax.Array) -> Tuple[jax.Array, jax.Array]:
  """2x2/stride-2 max pool. x [B, H, W, C] -> (values [B, H/2, W/2, C], argmax int8 0..3)."""
  win = _windows(x)                                             # [B, h, w, C, 4]
  idx = jnp.argmax(win, axis=-1)                                # first maximum on ties
  values = jnp.take_along_axis(win, idx[..., None], axis=-1)[..., 0]
  return values, idx.astype(jnp.int8)


def max_unpool(values: jax.Array, idx: jax.Array) -> jax.Array:
  """Puts each value back in the slot its max came from; the other 3 slots are zero.

  values, idx [B, h, w, C] -> [B, 2h, 2w, C]. The inverse of max_pool_with_argmax on the
  positions of the maxima.
  """
  b, h, w, c = values.shape
  slots = jnp.arange(4, dtype=idx.dtype).reshape(1, 1, 1, 1, 4)
  win = jnp.where(idx[..., None] == slots, values[..., None], jnp.zeros((), values.dtype))
  win = win.reshape(b, h, w, c, 2, 2).transpose(0, 1, 4, 2, 5, 3)   # [B, h, 2, w, 2, C]
  return win.reshape(b, 2 * h, 2 * w, c)

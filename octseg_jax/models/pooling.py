"""2x2 max pooling that records where each maximum came from, and the matching unpooling.

Flax has no max-pool-with-argmax. The four slots of each 2x2 window (order: top-left,
top-right, bottom-left, bottom-right) are read as strided views of [B, h, 2, w, 2, C], with the
channels kept innermost (no transposed copy), and compared elementwise. Ties are broken towards
the first slot in that order (like jnp.argmax), so the recorded index is deterministic. Values
equal flax.linen.max_pool with window and stride 2, and so do gradients where the window
maximum is unique (the gradient goes to the recorded slot only).
"""

from typing import List, Tuple

import jax
import jax.numpy as jnp


def _slots(x: jax.Array) -> List[jax.Array]:
  """[B, H, W, C] -> the 4 window slots, each [B, H/2, W/2, C], in slot order."""
  b, h, w, c = x.shape
  if h % 2 or w % 2:
    raise ValueError(f"max pooling needs even height and width, got {h}x{w}")
  x = x.reshape(b, h // 2, 2, w // 2, 2, c)
  return [x[:, :, dy, :, dx] for dy in (0, 1) for dx in (0, 1)]


def max_pool_with_argmax(x: jax.Array) -> Tuple[jax.Array, jax.Array]:
  """2x2/stride-2 max pool. x [B, H, W, C] -> (values [B, H/2, W/2, C], argmax int8 0..3)."""
  s = _slots(x)
  top = jnp.maximum(jnp.maximum(s[0], s[1]), jnp.maximum(s[2], s[3]))
  idx = jnp.where(s[0] == top, 0, jnp.where(s[1] == top, 1, jnp.where(s[2] == top, 2, 3)))
  idx = idx.astype(jnp.int8)
  # Select (not max) so that the gradient reaches the recorded slot only, also on ties.
  values = jnp.where(idx == 0, s[0], jnp.where(idx == 1, s[1], jnp.where(idx == 2, s[2], s[3])))
  return values, idx


def max_unpool(values: jax.Array, idx: jax.Array) -> jax.Array:
  """Puts each value back in the slot its max came from; the other 3 slots are zero.

  values, idx [B, h, w, C] -> [B, 2h, 2w, C]. The inverse of max_pool_with_argmax on the
  positions of the maxima.
  """
  b, h, w, c = values.shape
  zero = jnp.zeros((), values.dtype)
  planes = [jnp.where(idx == k, values, zero) for k in range(4)]        # 4 x [B, h, w, C]
  rows = [jnp.stack(planes[2 * dy:2 * dy + 2], axis=3) for dy in (0, 1)]  # [B, h, w, 2, C]
  return jnp.stack(rows, axis=2).reshape(b, 2 * h, 2 * w, c)           # [B, h, 2, w, 2, C]

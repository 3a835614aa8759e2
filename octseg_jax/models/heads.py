"""The boundary head's geometry (pure JAX): per column and boundary, a distribution over rows
whose expectation is the boundary row (soft-argmax, He et al., MICCAI 2019 / MedIA 2021), put
in anatomical order by construction.

Rows are edge coordinates, as in geometry.boundaries: boundary k at row r means layer k starts at
pixel row r, so a one-hot distribution on row r gives exactly r.
"""

import jax
import jax.numpy as jnp


def soft_argmax_rows(row_logits: jax.Array, window: int = 0) -> jax.Array:
  """Row logits [B, H, W, N] -> expected row [B, N, W] of each column's softmax over rows. With
  window > 0 the softmax runs only over the rows within `window` of the column's most likely
  row, so probability far from the peak (a second mode, a shadow) cannot pull the expectation
  towards it."""
  h = row_logits.shape[1]
  z = row_logits.astype(jnp.float32)
  rows = jnp.arange(h, dtype=jnp.float32)[None, :, None, None]
  if window > 0:
    peak = jnp.argmax(z, axis=1, keepdims=True).astype(jnp.float32)          # [B, 1, W, N]
    z = jnp.where(jnp.abs(rows - peak) <= window, z, -1e9)
  p = jax.nn.softmax(z, axis=1)                                              # [B, H, W, N]
  return jnp.moveaxis(jnp.sum(p * rows, axis=1), -1, 1)                      # [B, N, W]


def order_boundaries(s: jax.Array) -> jax.Array:
  """Unordered rows [B, N, W] -> ordered: b_1 = s_1, b_k = b_{k-1} + relu(s_k - b_{k-1}) (the
  first boundary plus non-negative increments; equal to a running maximum down the boundaries,
  with the gradient going to whichever boundary sets the row)."""
  def step(prev, s_k):
    b = prev + jax.nn.relu(s_k - prev)
    return b, b

  first = s[:, 0]
  _, rest = jax.lax.scan(step, first, jnp.moveaxis(s[:, 1:], 1, 0))          # [N-1, B, W]
  return jnp.concatenate([first[:, None], jnp.moveaxis(rest, 0, 1)], axis=1)


def ordered_boundaries(row_logits: jax.Array, window: int = 0) -> jax.Array:
  """Row logits [B, H, W, N] -> ordered boundary rows [B, N, W] (float32)."""
  return order_boundaries(soft_argmax_rows(row_logits, window))

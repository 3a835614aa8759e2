"""Segmentation losses on logits [B, H, W, K] and integer labels [B, H, W].

Pixels labelled IGNORE (255), or any id >= K, are excluded from every term.
"""

import jax
import jax.numpy as jnp

from octseg_jax.preprocessing import IGNORE

DICE_MODES = ("global", "class_mean")


def valid_mask(labels: jax.Array, num_classes: int) -> jax.Array:
  """[B, H, W] bool: pixels that carry a class id."""
  return (labels != IGNORE) & (labels < num_classes)


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean softmax cross-entropy over labelled pixels (0 if there are none)."""
  k = logits.shape[-1]
  valid = valid_mask(labels, k)
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  # A one-hot product rather than take_along_axis: its gradient needs no scatter, which is
  # slow on CPUs and GPUs. IGNORE ids one-hot to all zeros.
  nll = -jnp.sum(logp * jax.nn.one_hot(labels, k, dtype=logp.dtype), axis=-1)   # [B, H, W]
  return jnp.sum(nll) / jnp.maximum(jnp.sum(valid), 1)


def soft_dice(logits: jax.Array, labels: jax.Array, mode: str = "global",
              smooth: float = 1.0) -> jax.Array:
  """Soft Dice coefficient of softmax probabilities against one-hot labels.

  global: 2 sum(p*y) / (sum(p) + sum(y)) over all labelled pixels and all K classes, the
    paper's form (with smooth added to numerator and denominator).
  class_mean: the same per class, then the mean over the K classes (optax's dice_loss form).
  """
  if mode not in DICE_MODES:
    raise ValueError(f"unknown dice mode {mode!r}; valid: {DICE_MODES}")
  k = logits.shape[-1]
  valid = valid_mask(labels, k)[..., None]                               # [B, H, W, 1]
  probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1) * valid
  onehot = jax.nn.one_hot(labels, k) * valid
  axes = (0, 1, 2) if mode == "class_mean" else None
  inter = jnp.sum(probs * onehot, axis=axes)
  total = jnp.sum(probs, axis=axes) + jnp.sum(onehot, axis=axes)
  return jnp.mean((2 * inter + smooth) / (total + smooth))


def hybrid(logits: jax.Array, labels: jax.Array, dice_weight: float = 0.5,
           dice_mode: str = "global") -> jax.Array:
  """The paper's loss: CE + dice_weight * (1 - Dice). dice_weight=0 gives CE alone."""
  loss = cross_entropy(logits, labels)
  if dice_weight:
    loss = loss + dice_weight * (1.0 - soft_dice(logits, labels, dice_mode))
  return loss

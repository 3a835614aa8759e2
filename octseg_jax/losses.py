"""Segmentation losses on logits [B, H, W, K] and integer labels [B, H, W], chosen by name.

Every loss is written once, as a function of additive per-batch sums (`batch_sums`): the
training step applies it to one batch's sums, and the validation loss of a whole split applies
the same function to the sums accumulated over all its batches. So the two can never drift
apart (same smoothing, same ignore rule); for a split that fits in one batch they are equal.

Pixels labelled IGNORE (255), or any id >= K, are excluded from every term.

Adding a loss: write `def my_loss(sums, cfg, xp) -> scalar` using the sums below (add a sum to
`batch_sums` if it needs a new one) and add it to LOSSES; select it with `loss.name`.
"""

import types
from typing import Callable, Dict

import jax
import jax.numpy as jnp

from octseg_jax.preprocessing import IGNORE

DICE_MODES = ("global", "class_mean")
DICE_SMOOTH = 1.0


def valid_mask(labels: jax.Array, num_classes: int) -> jax.Array:
  """[B, H, W] bool: pixels that carry a class id."""
  return (labels != IGNORE) & (labels < num_classes)


def pixel_weights(labels: jax.Array, num_classes: int, boundary_weight: float,
                  layer_weight: float) -> jax.Array:
  """ReLayNet-style per-pixel weights [B, H, W]: 1 + boundary_weight where the label differs
  from the labelled pixel directly above or below (in-image neighbours; IGNORE neighbours do
  not count, so fluid and padding draw no boundary), + layer_weight on every labelled
  non-background pixel; 0 on unlabelled pixels."""
  valid = valid_mask(labels, num_classes)
  lab = labels.astype(jnp.int32)
  differs = (lab[:, 1:] != lab[:, :-1]) & valid[:, 1:] & valid[:, :-1]        # [B, H-1, W]
  none = jnp.zeros_like(differs[:, :1])
  boundary = (jnp.concatenate([none, differs], axis=1)                         # above differs
              | jnp.concatenate([differs, none], axis=1))                      # below differs
  weights = 1.0 + boundary_weight * boundary + layer_weight * (lab > 0)
  return jnp.where(valid, weights, 0.0)


def batch_sums(logits: jax.Array, labels: jax.Array, boundary_weight: float = 10.0,
               layer_weight: float = 5.0) -> Dict[str, jax.Array]:
  """Additive sums over the labelled pixels of a batch, from which every loss is computed.

  nll_sum, n_valid: summed negative log-likelihood and pixel count; weighted_nll_sum,
  weight_sum: the same with `pixel_weights`; inter, psum, ysum [K]: sum of p*y, p and y per
  class (softmax probabilities p, one-hot labels y). Unused sums cost nothing under jit.
  """
  k = logits.shape[-1]
  valid = valid_mask(labels, k)
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  # A one-hot product rather than take_along_axis: its gradient needs no scatter, which is
  # slow on CPUs and GPUs. IGNORE ids one-hot to all zeros.
  onehot = jax.nn.one_hot(labels, k, dtype=logp.dtype)                         # [B, H, W, K]
  nll = -jnp.sum(logp * onehot, axis=-1)                                       # [B, H, W]
  probs = jnp.exp(logp) * valid[..., None]
  weights = pixel_weights(labels, k, boundary_weight, layer_weight)
  return {
      "nll_sum": jnp.sum(nll),
      "n_valid": jnp.sum(valid).astype(jnp.float32),
      "weighted_nll_sum": jnp.sum(weights * nll),
      "weight_sum": jnp.sum(weights),
      "inter": jnp.sum(probs * onehot, axis=(0, 1, 2)),
      "psum": jnp.sum(probs, axis=(0, 1, 2)),
      "ysum": jnp.sum(onehot, axis=(0, 1, 2)),
  }


def cross_entropy_from_sums(sums, xp=jnp):
  """Mean cross-entropy over labelled pixels (0 if there are none)."""
  return sums["nll_sum"] / xp.maximum(sums["n_valid"], 1)


def dice_from_sums(sums, mode: str = "global", smooth: float = DICE_SMOOTH, xp=jnp):
  """Soft Dice of probabilities against one-hot labels.

  global: (2 sum(p*y) + smooth) / (sum(p) + sum(y) + smooth) over all K classes, the paper's
    form. class_mean: the same per class, then the mean over the K classes.
  """
  if mode not in DICE_MODES:
    raise ValueError(f"unknown dice mode {mode!r}; valid: {DICE_MODES}")
  inter, total = sums["inter"], sums["psum"] + sums["ysum"]
  if mode == "global":
    inter, total = xp.sum(inter), xp.sum(total)
  return xp.mean((2 * inter + smooth) / (total + smooth))


def hybrid_loss(sums, cfg, xp=jnp):
  """The paper's loss: CE + dice_weight * (1 - Dice). dice_weight=0 gives CE alone."""
  return (cross_entropy_from_sums(sums, xp)
          + cfg.dice_weight * (1.0 - dice_from_sums(sums, cfg.dice_mode, xp=xp)))


def ce_loss(sums, cfg, xp=jnp):
  """Cross-entropy alone."""
  del cfg
  return cross_entropy_from_sums(sums, xp)


def weighted_hybrid_loss(sums, cfg, xp=jnp):
  """ReLayNet-style: boundary- and layer-weighted CE (weighted mean over labelled pixels,
  `pixel_weights` with cfg.boundary_weight, cfg.layer_weight) + dice_weight * (1 - Dice)."""
  wce = sums["weighted_nll_sum"] / xp.maximum(sums["weight_sum"], 1e-12)
  return wce + cfg.dice_weight * (1.0 - dice_from_sums(sums, cfg.dice_mode, xp=xp))


LOSSES: Dict[str, Callable] = {
    "hybrid": hybrid_loss,
    "ce": ce_loss,
    "weighted_hybrid": weighted_hybrid_loss,
}


def get_loss(name: str) -> Callable:
  if name not in LOSSES:
    raise ValueError(f"unknown loss {name!r}; valid: {sorted(LOSSES)}")
  return LOSSES[name]


# Direct forms on logits and labels (tests, the benchmark, outside users): the same formulas.

def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean softmax cross-entropy over labelled pixels (0 if there are none)."""
  return cross_entropy_from_sums(batch_sums(logits, labels))


def soft_dice(logits: jax.Array, labels: jax.Array, mode: str = "global",
              smooth: float = DICE_SMOOTH) -> jax.Array:
  """Soft Dice coefficient (see dice_from_sums)."""
  return dice_from_sums(batch_sums(logits, labels), mode, smooth)


def hybrid(logits: jax.Array, labels: jax.Array, dice_weight: float = 0.5,
           dice_mode: str = "global") -> jax.Array:
  """The paper's loss CE + dice_weight * (1 - Dice) on one batch."""
  cfg = types.SimpleNamespace(dice_weight=dice_weight, dice_mode=dice_mode)
  return hybrid_loss(batch_sums(logits, labels), cfg)

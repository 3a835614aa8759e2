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
from typing import Callable, Dict, Optional

import jax
import jax.numpy as jnp

from octseg_jax.anatomy import FLUID_THRESHOLD, IGNORE, NUM_BOUNDARIES

DICE_MODES = ("global", "class_mean")
DICE_SMOOTH = 1.0
DICE_WEIGHT = 0.5         # the paper's CE + 0.5 * (1 - Dice) (config loss.dice_weight)
BOUNDARY_WEIGHT = 10.0    # weighted_hybrid's extra CE weights (loss.boundary_weight,
LAYER_WEIGHT = 5.0        # loss.layer_weight)


def valid_mask(labels: jax.Array, num_classes: int) -> jax.Array:
  """[B, H, W] bool: pixels that carry a class id."""
  return (labels != IGNORE) & (labels < num_classes)


def pixel_weights(labels: jax.Array, num_classes: int, boundary_weight: float,
                  layer_weight: float, column_weight: float = 0.0,
                  columns: Optional[jax.Array] = None) -> jax.Array:
  """ReLayNet-style per-pixel weights [B, H, W]: 1 + boundary_weight where the label differs
  from the labelled pixel directly above or below (in-image neighbours; IGNORE neighbours do
  not count, so fluid and padding draw no boundary), + layer_weight on every labelled
  non-background pixel, + column_weight on every layer (non-background) pixel of the flagged
  `columns` (bool [B, W], e.g. the columns with fluid); 0 on unlabelled pixels."""
  valid = valid_mask(labels, num_classes)
  lab = labels.astype(jnp.int32)
  differs = (lab[:, 1:] != lab[:, :-1]) & valid[:, 1:] & valid[:, :-1]        # [B, H-1, W]
  none = jnp.zeros_like(differs[:, :1])
  boundary = (jnp.concatenate([none, differs], axis=1)                         # above differs
              | jnp.concatenate([differs, none], axis=1))                      # below differs
  weights = 1.0 + boundary_weight * boundary + layer_weight * (lab > 0)
  if columns is not None and column_weight:
    weights = weights + column_weight * (columns[:, None, :] & (lab > 0))
  return jnp.where(valid, weights, 0.0)


def batch_sums(logits: jax.Array, labels: jax.Array, boundary_weight: float = BOUNDARY_WEIGHT,
               layer_weight: float = LAYER_WEIGHT, column_weight: float = 0.0,
               columns: Optional[jax.Array] = None) -> Dict[str, jax.Array]:
  """Additive sums over the labelled pixels of a batch, from which every loss is computed.

  nll_sum, n_valid: summed negative log-likelihood and pixel count; weighted_nll_sum,
  weight_sum: the same with `pixel_weights` (column_weight on `columns` [B, W] among them);
  inter, psum, ysum [K]: sum of p*y, p and y per class (softmax probabilities p, one-hot
  labels y). Unused sums cost nothing under jit.
  """
  k = logits.shape[-1]
  valid = valid_mask(labels, k)
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  # A one-hot product rather than take_along_axis: its gradient needs no scatter, which is
  # slow on CPUs and GPUs. IGNORE ids one-hot to all zeros.
  onehot = jax.nn.one_hot(labels, k, dtype=logp.dtype)                         # [B, H, W, K]
  nll = -jnp.sum(logp * onehot, axis=-1)                                       # [B, H, W]
  probs = jnp.exp(logp) * valid[..., None]
  weights = pixel_weights(labels, k, boundary_weight, layer_weight, column_weight, columns)
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


def hybrid(logits: jax.Array, labels: jax.Array, dice_weight: float = DICE_WEIGHT,
           dice_mode: str = "global") -> jax.Array:
  """The paper's loss CE + dice_weight * (1 - Dice) on one batch."""
  cfg = types.SimpleNamespace(dice_weight=dice_weight, dice_mode=dice_mode)
  return hybrid_loss(batch_sums(logits, labels), cfg)


# The optional heads (model.fluid_head, model.boundary_head): additive sums and their losses,
# added to the class loss with loss.fluid_weight and loss.boundary_head_weight.

def boundary_targets(labels: jax.Array):
  """Layer labels [B, H, W] -> (boundary rows [B, 8, W] float32, known [B, 8, W] bool), the
  rows of geometry.boundaries.boundaries_from_labels (ignore_unknown=True) in JAX. A boundary at
  row H (the retina reaching the bottom edge) is not known: no row of the softmax is there."""
  h, n_layers = labels.shape[1], NUM_BOUNDARIES - 1
  lab = labels.astype(jnp.int32)
  rows = jnp.arange(h)[None, :, None]
  is_layer = (lab >= 1) & (lab <= n_layers)
  cur = jnp.max(jnp.where(is_layer, rows, -1), axis=1) + 1                   # [B, W], BM
  out = [cur]
  for k in range(n_layers, 0, -1):
    first = jnp.min(jnp.where(is_layer & (lab >= k), rows, h), axis=1)
    cur = jnp.minimum(first, cur)
    out.append(cur)
  b = jnp.stack(out[::-1], axis=1)                                           # [B, 8, W]
  unknown = lab == IGNORE
  above = jnp.take_along_axis(unknown, jnp.clip(b - 1, 0, h - 1), axis=1) & (b > 0)
  below = jnp.take_along_axis(unknown, jnp.clip(b[:, -1:], 0, h - 1), axis=1) & (b[:, -1:] < h)
  above = above.at[:, -1:].set(above[:, -1:] | below)
  known = is_layer.any(axis=1)[:, None, :] & ~above & (b < h)
  return b.astype(jnp.float32), known


def boundary_sums(row_logits: jax.Array, boundaries: jax.Array, labels: jax.Array,
                  target_sigma: float = 0.0):
  """Sums of the boundary head over known (column, boundary) pairs: smooth-L1 (pixels, beta
  1) of the ordered rows, the row NLL (cross-entropy of each boundary's row distribution
  against the true row, or with target_sigma > 0 against a Gaussian of that sd in rows around
  it, normalised over the rows), absolute error and count per boundary."""
  target, known = boundary_targets(labels)
  m = known.astype(jnp.float32)
  d = jnp.abs(boundaries - target)
  smooth_l1 = jnp.where(d < 1.0, 0.5 * d * d, d - 0.5)
  logp = jax.nn.log_softmax(row_logits.astype(jnp.float32), axis=1)          # [B, H, W, 8]
  rows = jnp.arange(logp.shape[1])[None, :, None, None]
  true = jnp.moveaxis(target, 1, -1)[:, None]                                # [B, 1, W, 8]
  if target_sigma > 0:
    w = jnp.exp(-0.5 * jnp.square((rows - true) / target_sigma))
    w = w / jnp.sum(w, axis=1, keepdims=True)
    nll = -jnp.moveaxis(jnp.sum(w * logp, axis=1), -1, 1)                     # [B, 8, W]
  else:
    true_row = rows == true.astype(jnp.int32)                                # [B, H, W, 8]
    nll = -jnp.moveaxis(jnp.sum(jnp.where(true_row, logp, 0.0), axis=1), -1, 1)
  return {"boundary_sl1_sum": jnp.sum(m * smooth_l1), "boundary_nll_sum": jnp.sum(m * nll),
          "boundary_n": jnp.sum(m), "boundary_abs_sum": jnp.sum(m * d, axis=(0, 2)),
          "boundary_count": jnp.sum(m, axis=(0, 2))}


def depth_sums(logits: jax.Array, labels: jax.Array):
  """Sums of the depth loss, a boundary loss on the pixel head: per column, the soft depth of
  boundary k + 1 below the ILM is the summed probability of layers 1..k over the column's rows
  (soft thicknesses, differentiable), compared with the true depth (boundary_targets) by
  smooth-L1 in pixels (beta 1) where both boundaries are known. Returns depth_sl1_sum,
  depth_n, and per boundary 2..8 depth_abs_sum [7] (pixels)."""
  probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)                # [B, H, W, K]
  soft = jnp.cumsum(jnp.sum(probs[..., 1:NUM_BOUNDARIES], axis=1), axis=-1)  # [B, W, 7]
  soft = jnp.moveaxis(soft, -1, 1)                                           # [B, 7, W]
  target, known = boundary_targets(labels)
  m = (known[:, 1:] & known[:, :1]).astype(jnp.float32)
  d = jnp.abs(soft - (target[:, 1:] - target[:, :1]))
  smooth_l1 = jnp.where(d < 1.0, 0.5 * d * d, d - 0.5)
  return {"depth_sl1_sum": jnp.sum(m * smooth_l1), "depth_n": jnp.sum(m),
          "depth_abs_sum": jnp.sum(m * d, axis=(0, 2))}


def depth_loss_from_sums(sums, xp=jnp):
  """Mean smooth-L1 (pixels) of the soft boundary depths over known (column, boundary) pairs."""
  return sums["depth_sl1_sum"] / xp.maximum(sums["depth_n"], 1)


def fluid_sums(fluid_logit: jax.Array, fluid: jax.Array, known: jax.Array):
  """Sums of the fluid head over pixels whose fluid state is known: binary cross-entropy, the
  soft Dice sums of sigmoid probabilities, and the hard (p > FLUID_THRESHOLD) true/false
  positives and false negatives."""
  z = fluid_logit.astype(jnp.float32)
  t = fluid.astype(jnp.float32)
  m = known.astype(jnp.float32)
  prob = jax.nn.sigmoid(z)
  p = prob * m
  hard = (prob > FLUID_THRESHOLD).astype(jnp.float32) * m
  return {"fluid_bce_sum": jnp.sum(m * (jax.nn.softplus(z) - z * t)), "fluid_n": jnp.sum(m),
          "fluid_inter": jnp.sum(p * t), "fluid_psum": jnp.sum(p), "fluid_ysum": jnp.sum(m * t),
          "fluid_tp": jnp.sum(hard * t), "fluid_fp": jnp.sum(hard * (1 - t)),
          "fluid_fn": jnp.sum(m * t * (1 - hard))}


def fluid_loss_from_sums(sums, xp=jnp):
  """Mean BCE + (1 - soft Dice) of the fluid channel."""
  dice = (2 * sums["fluid_inter"] + DICE_SMOOTH) / (sums["fluid_psum"] + sums["fluid_ysum"]
                                                   + DICE_SMOOTH)
  return sums["fluid_bce_sum"] / xp.maximum(sums["fluid_n"], 1) + 1.0 - dice


def boundary_loss_from_sums(sums, xp=jnp):
  """Mean smooth-L1 (pixels) + mean row NLL over known (column, boundary) pairs."""
  return (sums["boundary_sl1_sum"] + sums["boundary_nll_sum"]) / xp.maximum(sums["boundary_n"], 1)

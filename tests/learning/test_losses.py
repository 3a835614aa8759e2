import jax
import jax.numpy as jnp
import numpy as np
import optax

from octseg_jax.learning import losses
def test_cross_entropy_hand_computed_and_ignore():
  logits = jnp.array([[[[0.0, np.log(3.0)], [np.log(4.0), 0.0]]]])   # [1, 1, 2, 2]
  labels = jnp.array([[[1, 0]]], jnp.uint8)
  # p(class 1) = 3/4 at pixel 0, p(class 0) = 4/5 at pixel 1.
  expected = -(np.log(0.75) + np.log(0.8)) / 2
  np.testing.assert_allclose(losses.cross_entropy(logits, labels), expected, rtol=1e-6)
  ignored = jnp.array([[[1, 255]]], jnp.uint8)
  np.testing.assert_allclose(losses.cross_entropy(logits, ignored), -np.log(0.75), rtol=1e-6)


def test_global_soft_dice_hand_computed():
  # Two pixels, two classes; probabilities (0.75, 0.25) and (0.2, 0.8); labels 0 and 1.
  logits = jnp.log(jnp.array([[[[0.75, 0.25], [0.2, 0.8]]]]))
  labels = jnp.array([[[0, 1]]], jnp.uint8)
  inter = 0.75 + 0.8
  expected = (2 * inter + 1.0) / (2 + 2 + 1.0)
  np.testing.assert_allclose(losses.soft_dice(logits, labels, "global"), expected, rtol=1e-6)
  np.testing.assert_allclose(losses.soft_dice(logits, labels, "global", smooth=0.0),
                             inter / 2, rtol=1e-6)


def test_class_mean_dice_matches_optax():
  rng = np.random.default_rng(0)
  logits = jnp.asarray(rng.normal(size=(2, 5, 4, 3)).astype(np.float32))
  labels = jnp.asarray(rng.integers(0, 3, size=(2, 5, 4)).astype(np.uint8))
  # optax: (I + s) / (I + (P - I)/2 + (T - I)/2 + s) = (2I + 2s) / (P + T + 2s), so its
  # smooth s is our smooth 2s; otherwise the definitions match.
  ours = 1.0 - losses.soft_dice(logits, labels, "class_mean", smooth=2.0)
  theirs = optax.losses.dice_loss(logits.reshape(1, -1, 3), jax.nn.one_hot(labels.reshape(1, -1), 3),
                                  smooth=1.0, reduction="mean")[0]
  np.testing.assert_allclose(ours, theirs, rtol=1e-5)


def test_hybrid_ignores_255_pixels_whatever_their_logits():
  rng = np.random.default_rng(1)
  logits = jnp.asarray(rng.normal(size=(1, 4, 4, 8)).astype(np.float32))
  labels = np.asarray(rng.integers(0, 8, size=(1, 4, 4)), np.uint8)
  labels[0, :2] = 255
  other = logits.at[0, :2].set(100.0)
  a = losses.hybrid(logits, jnp.asarray(labels))
  b = losses.hybrid(other, jnp.asarray(labels))
  np.testing.assert_allclose(a, b, rtol=1e-6)
  ce_only = losses.hybrid(logits, jnp.asarray(labels), dice_weight=0.0)
  np.testing.assert_allclose(ce_only, losses.cross_entropy(logits, jnp.asarray(labels)))
  d = losses.soft_dice(logits, jnp.asarray(labels))
  np.testing.assert_allclose(a, ce_only + 0.5 * (1 - d), rtol=1e-6)


def test_depth_loss_hand_computed():
  """Rows 0-1 background, rows 2..8 layers 1..7 (one row each), row 9 background below BM.
  Sharp logits of the truth: every soft depth is exact. Layer 4's row predicted as layer 3:
  the depth of boundary 4 (top of layer 4) is 1 row too deep, the others exact."""
  col = np.array([0, 0, 1, 2, 3, 4, 5, 6, 7, 0], np.uint8)
  labels = np.tile(col[None, :, None], (1, 1, 3))                              # [1, 10, 3]
  sharp = lambda lab: jnp.asarray(100.0 * np.eye(8, dtype=np.float32)[lab])
  exact = losses.depth_sums(sharp(labels), jnp.asarray(labels))
  assert float(exact["depth_n"]) == 7 * 3 and float(exact["depth_sl1_sum"]) < 1e-6
  wrong = labels.copy()
  wrong[0, 5] = 3                                                               # layer 4 -> 3
  out = losses.depth_sums(sharp(wrong), jnp.asarray(labels))
  np.testing.assert_allclose(np.asarray(out["depth_abs_sum"]), [0, 0, 3, 0, 0, 0, 0], atol=1e-5)
  np.testing.assert_allclose(float(out["depth_sl1_sum"]), 3 * 0.5, rtol=1e-5)   # d = 1: 0.5
  np.testing.assert_allclose(float(losses.depth_loss_from_sums(out)), 1.5 / 21, rtol=1e-5)
  ignored = labels.copy()
  ignored[0, 4, 1] = 255                      # layer 3's row unlabelled in column 1: the
  n = float(losses.depth_sums(sharp(labels), jnp.asarray(ignored))["depth_n"])
  assert n == 7 * 3 - 2                       # boundaries 3 and 4 there are unknown (targets)

import jax.numpy as jnp
import numpy as np

from octseg_jax.learning import metrics
def test_confusion_hand_computed_with_ignore():
  labels = jnp.array([[0, 1, 1, 2, 255]], jnp.uint8)
  preds = jnp.array([[0, 1, 2, 2, 1]], jnp.uint8)
  cm = np.asarray(metrics.confusion_matrix(labels, preds, 3))
  np.testing.assert_array_equal(cm, [[1, 0, 0], [0, 1, 1], [0, 0, 1]])


def test_per_class_values_and_nan_for_absent_class():
  cm = np.array([[1, 0, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]])
  pc = metrics.per_class(cm)
  np.testing.assert_allclose(pc["dice"][:3], [1.0, 2 / 3, 2 / 3])
  np.testing.assert_allclose(pc["iou"][:3], [1.0, 0.5, 0.5])
  np.testing.assert_allclose(pc["accuracy"][:3], [1.0, 0.5, 1.0])
  assert np.isnan(pc["dice"][3]) and np.isnan(pc["iou"][3])


def test_summarise_protocols():
  cm = np.zeros((8, 8), int)
  cm[0, 0], cm[1, 1], cm[1, 2], cm[2, 2] = 6, 1, 1, 2      # classes 3..7 absent
  s = metrics.summarise(cm, soft_inter=8.0)
  assert s["pixels"] == 10
  np.testing.assert_allclose(s["paper"]["accuracy"], 0.9)
  np.testing.assert_allclose(s["paper"]["global_dice_soft"], 0.8)
  np.testing.assert_allclose(s["paper"]["global_iou_soft"], 0.8 / 1.2)
  # Layers 1 and 2: Dice 2/3 and 4/5; layers 3..7 absent -> NaN, not 1.0.
  np.testing.assert_allclose(s["literature"]["layer_dice"][:2], [2 / 3, 0.8])
  assert all(np.isnan(v) for v in s["literature"]["layer_dice"][2:])
  np.testing.assert_allclose(s["literature"]["mean_layer_dice"], (2 / 3 + 0.8) / 2)

import numpy as np
import pytest

from octseg_jax.data import preprocessing as pp
from octseg_jax.data import synthetic


def test_normalise_percentile_is_gain_invariant_and_constant_safe():
  rng = np.random.default_rng(0)
  img = rng.uniform(20, 200, size=(40, 30))
  a = pp.normalise(img)
  b = pp.normalise(img * 0.4)
  np.testing.assert_allclose(a, b, atol=1e-5)
  assert a.min() == 0.0 and a.max() == 1.0
  np.testing.assert_array_equal(pp.normalise(np.full((5, 5), 7.0)), 0.0)
  np.testing.assert_allclose(pp.normalise(np.array([[0, 255]]), "divide255"), [[0, 1]])
  with pytest.raises(ValueError, match="unknown normalisation"):
    pp.normalise(img, "zscore")


def test_resize_nearest_keeps_labels_and_integer_factor_is_exact():
  m = np.arange(12, dtype=np.uint8).reshape(3, 4)
  up = pp.resize_nearest(m, (6, 8))
  np.testing.assert_array_equal(up, np.repeat(np.repeat(m, 2, 0), 2, 1))
  np.testing.assert_array_equal(pp.resize_nearest(up, (3, 4)), m)


def test_resize_bilinear_preserves_constant_and_linear_ramps():
  np.testing.assert_allclose(pp.resize_bilinear(np.full((5, 7), 3.0), (11, 4)), 3.0, atol=1e-6)
  ramp = np.tile(np.arange(8, dtype=np.float32), (4, 1))
  up = pp.resize_bilinear(ramp, (4, 16))
  # Interior samples of a linear ramp stay on the ramp (pixel-centre convention).
  np.testing.assert_allclose(up[:, 2:-2], np.tile((np.arange(16) + 0.5) / 2 - 0.5, (4, 1))[:, 2:-2],
                             atol=1e-5)


def test_one_hot_ignore_is_all_zero():
  oh = pp.one_hot(np.array([[0, 2, 255]]), 3)
  np.testing.assert_array_equal(oh[0], [[1, 0, 0], [0, 0, 1], [0, 0, 0]])


def test_band_contains_the_retina_of_phantoms():
  s = synthetic.generate(6, 496, 256, seed=2)
  for img, m in zip(s.images, s.masks):
    top = pp.find_retina_band(img, 216)
    layer_rows = np.nonzero(((m > 0) & (m < 8)).any(1))[0]
    assert top <= layer_rows.min() and layer_rows.max() < top + 216


def _padded_phantom():
  """A phantom B-scan with Duke-like registration padding: 255 over the top rows of the right
  half of the columns and the bottom rows of the left half (as a vertical shift leaves it); the
  scan itself below 240, so that only the padding is saturated."""
  img = np.minimum(synthetic.generate(1, 496, 256, seed=3).images[0], 239).astype(np.float32)
  img[:60, 128:] = 255
  img[440:, :128] = 255
  return img


def test_padding_is_found_below_255_as_a_jpeg_or_a_gain_leaves_it():
  img = _padded_phantom()
  truth = np.zeros(img.shape, bool)                   # the padding and PADDING_RING rows
  truth[:60 + pp.PADDING_RING, 128:] = truth[440 - pp.PADDING_RING:, :128] = True
  np.testing.assert_array_equal(pp.edge_padding(img), truth)
  rng = np.random.default_rng(0)
  jpeg_like = np.clip(img + rng.integers(-6, 1, img.shape), 0, 255)   # padding 249..255
  for variant in (img * 0.9, img - 1, jpeg_like):
    np.testing.assert_array_equal(pp.edge_padding(variant), truth)
  assert not pp.edge_padding(np.zeros((8, 8))).any()


def test_the_band_does_not_move_when_padding_falls_below_255():
  img = _padded_phantom()
  top = pp.find_retina_band(img, 224)
  for variant in (img * 0.9, img - 1, np.floor(img * 256 / 257)):
    assert pp.find_retina_band(variant, 224) == top
  assert pp.find_retina_band(np.where(img == 255, 254, img), 224) == top
  labels = synthetic.generate(1, 496, 256, seed=3).masks[0]
  rows = np.nonzero(((labels >= 1) & (labels <= 7)).any(axis=1))[0]
  assert top <= rows[0] and rows[-1] < top + 224           # the retina is inside the band


@pytest.mark.parametrize("resize", [None, (64, 64)])
def test_prepare_then_restore_recovers_the_mask(resize):
  s = synthetic.generate(2, 160, 100, seed=4)
  recipe = pp.Recipe(band_height=96, resize_to=resize, multiple=16)
  for img, m in zip(s.images, s.masks):
    x, y, place = pp.prepare(img, m, recipe)
    assert x.shape == pp.input_shape(recipe, img.shape) and x.shape[0] % 16 == 0
    assert x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    assert (y[place.model_rows:] == 255).all() and (y[:, place.model_cols:] == 255).all()
    back = pp.restore(pp.one_hot(y, 8), place).argmax(-1)
    if resize is None:   # native: exact
      np.testing.assert_array_equal(back, m)
    else:                # resized twice: labels agree except near boundaries
      assert (back == m).mean() > 0.9


def test_prepare_rejects_too_small_pad_target():
  with pytest.raises(ValueError, match="smaller"):
    pp.prepare(np.zeros((64, 64), np.uint8), None, pp.Recipe(band_height=0), pad_to=(32, 32))

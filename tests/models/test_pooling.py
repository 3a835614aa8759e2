import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from octseg_jax.models import reference
from octseg_jax.models.pooling import max_pool_with_argmax, max_unpool


def _random(shape, seed=0):
  return jnp.asarray(np.random.default_rng(seed).normal(size=shape).astype(np.float32))


def test_values_equal_flax_max_pool():
  x = _random((2, 8, 6, 3))
  values, idx = max_pool_with_argmax(x)
  np.testing.assert_array_equal(values, nn.max_pool(x, (2, 2), strides=(2, 2)))
  assert idx.shape == (2, 4, 3, 3) and idx.dtype == jnp.int8


def test_gradients_equal_flax_max_pool():
  x = _random((2, 8, 6, 3), seed=1)       # continuous values: no ties
  w = _random((2, 4, 3, 3), seed=2)
  ours = jax.grad(lambda x: jnp.sum(max_pool_with_argmax(x)[0] * w))(x)
  ref = jax.grad(lambda x: jnp.sum(nn.max_pool(x, (2, 2), strides=(2, 2)) * w))(x)
  np.testing.assert_allclose(ours, ref, rtol=0, atol=0)


def test_hand_computed_window_and_round_trip():
  # One 2x2 window [[1, 5], [7, 3]]: max 7 at slot 2 (bottom-left).
  x = jnp.array([[1.0, 5.0], [7.0, 3.0]]).reshape(1, 2, 2, 1)
  values, idx = max_pool_with_argmax(x)
  assert float(values[0, 0, 0, 0]) == 7.0 and int(idx[0, 0, 0, 0]) == 2
  np.testing.assert_array_equal(max_unpool(values, idx)[0, :, :, 0], [[0, 0], [7, 0]])


def test_unpool_puts_maxima_back_and_zeros_elsewhere():
  x = _random((1, 6, 4, 2), seed=3)
  values, idx = max_pool_with_argmax(x)
  up = max_unpool(values, idx)
  is_max = np.asarray(x) == np.repeat(np.repeat(np.asarray(values), 2, 1), 2, 2)
  np.testing.assert_array_equal(np.asarray(up), np.where(is_max, np.asarray(x), 0))
  assert int(is_max.sum()) == values.size        # exactly one slot per window


def test_ties_pick_the_first_slot():
  x = jnp.array([[2.0, 2.0], [2.0, 2.0], [0.0, 4.0], [4.0, 1.0]]).reshape(1, 4, 2, 1)
  values, idx = max_pool_with_argmax(x)
  assert idx[0, :, 0, 0].tolist() == [0, 1]      # all equal -> top-left; 4,4 -> top-right
  np.testing.assert_array_equal(values[0, :, 0, 0], [2.0, 4.0])


def test_pool_and_unpool_equal_argmax_reference_with_ties_values_and_gradients():
  """Strided-slot pooling equals the argmax formulation exactly: values, indices (ties from
  values rounded to a coarse grid), the unpooled map and the gradients of both."""
  x = jnp.round(_random((2, 8, 10, 3), seed=4) * 2) / 2             # many ties
  w = _random((2, 8, 10, 3), seed=5)
  values, idx = max_pool_with_argmax(x)
  ref_values, ref_idx = reference.argmax_pool(x)
  np.testing.assert_array_equal(values, ref_values)
  np.testing.assert_array_equal(idx, ref_idx)
  assert np.mean(np.asarray(x[:, ::2, ::2]) == np.asarray(x[:, ::2, 1::2])) > 0.1   # ties seen
  np.testing.assert_array_equal(max_unpool(values, idx),
                                reference.slot_unpool(ref_values, ref_idx))

  def round_trip(pool, unpool):
    return lambda x: jnp.sum(w * unpool(*pool(x)))
  ours = jax.grad(round_trip(max_pool_with_argmax, max_unpool))(x)
  np.testing.assert_array_equal(ours, jax.grad(round_trip(reference.argmax_pool,
                                                          reference.slot_unpool))(x))

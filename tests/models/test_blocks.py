"""The fast layers of models/blocks.py equal the plain Flax layers they replace: same variables
(tree and initial values), same outputs, same gradients (float64, rtol 1e-10, or float32 at
rtol 1e-5), and the whole SegNet equals one built from the plain Flax layers."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from octseg_jax.models import blocks, reference, segnet


def _rand(shape, seed, dtype=np.float64):
  return jnp.asarray(np.random.default_rng(seed).normal(size=shape).astype(dtype))


def _close(a, b, rtol):
  """Every leaf of trees a and b equal to rtol of the leaf's largest magnitude."""
  for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    u, v = np.asarray(u, np.float64), np.asarray(v, np.float64)
    assert u.shape == v.shape
    np.testing.assert_allclose(u, v, rtol=0, atol=rtol * max(np.abs(v).max(), 1e-30))


@pytest.mark.parametrize("shape,x64", [((7, 3, 1, 4), False), ((2, 2, 16, 8), True)])
def test_lecun_normal_draws_flaxs_numbers(shape, x64):
  """Value for value (under JAX's partitionable threefry, its default). Each compile of Flax's
  rank-4 draw costs seconds on CPU, so two cases; the SegNet test below compares every kernel."""
  assert jax.config.jax_threefry_partitionable
  key = jax.random.key(sum(shape))
  with jax.enable_x64(x64):
    dtype = jnp.float64 if x64 else jnp.float32
    ours = blocks.lecun_normal(key, shape, dtype)
    assert ours.dtype == dtype
    np.testing.assert_array_equal(ours, nn.initializers.lecun_normal()(key, shape, dtype))


def test_upconv_equals_conv_transpose_variables_values_and_gradients():
  with jax.enable_x64(True):
    x = _rand((2, 3, 5, 4), 0)                                  # [B, h, w, C]
    fast = blocks.UpConv2x2(6, jnp.float64)
    plain = nn.ConvTranspose(6, (2, 2), strides=(2, 2), dtype=jnp.float64)
    v_fast, v_plain = fast.init(jax.random.key(3), x), plain.init(jax.random.key(3), x)
    assert jax.tree.map(jnp.shape, v_fast) == jax.tree.map(jnp.shape, v_plain)
    _close(v_fast, v_plain, 0)                                  # same initial values
    v = {"params": {"kernel": _rand((2, 2, 4, 6), 1), "bias": _rand((6,), 2)}}
    w = _rand((2, 6, 10, 6), 4)
    y = fast.apply(v, x)
    assert y.shape == (2, 6, 10, 6)
    # Hand-computed: output pixel (2i + a, 2j + b) is x[i, j] @ kernel[1 - a, 1 - b] + bias.
    k, b = v["params"]["kernel"], v["params"]["bias"]
    np.testing.assert_allclose(y[1, 2 * 2 + 1, 2 * 4 + 0], x[1, 2, 4] @ k[0, 1] + b, rtol=1e-12)
    _close(y, plain.apply(v, x), 1e-12)

    def loss(module):
      return lambda v, x: jnp.sum(w * jnp.sin(module.apply(v, x)))
    _close(jax.grad(loss(fast), (0, 1))(v, x), jax.grad(loss(plain), (0, 1))(v, x), 1e-10)


def _plain_bn_relu(x, scale, bias, eps=1e-5):
  mean = jnp.mean(x, (0, 1, 2))
  var = jnp.mean(jnp.square(x - mean.reshape(1, 1, 1, -1)), (0, 1, 2))
  z = (x - mean.reshape(1, 1, 1, -1)) / jnp.sqrt(var.reshape(1, 1, 1, -1) + eps)
  return jnp.maximum(z * scale.reshape(1, 1, 1, -1) + bias.reshape(1, 1, 1, -1), 0), mean, var


@pytest.mark.parametrize("shape", [(2, 4, 8, 16),      # k = 64 rows folded (divides)
                                   (1, 3, 5, 16),      # 15 pixels: k = 64 does not divide
                                   (2, 2, 3, 2048)])   # wider than a row: k = 1
def test_channel_sum_equals_the_plain_sum(shape):
  with jax.enable_x64(True):
    x = _rand(shape, 7)
    s = blocks.channel_sum(x)
    assert s.shape == (1, 1, 1, shape[-1])
    np.testing.assert_allclose(s, jnp.sum(x, (0, 1, 2), keepdims=True), rtol=1e-12)
    # Hand-checked cell: channel 1 is the sum of x[..., 1] over every pixel.
    np.testing.assert_allclose(s[0, 0, 0, 1], np.asarray(x)[..., 1].sum(), rtol=1e-12)


@pytest.mark.parametrize("x_shape,kernel_shape,padding", [
    ((2, 6, 7, 3), (3, 3, 3, 5), "SAME"),
    ((1, 5, 4, 2), (1, 3, 2, 4), ((0, 0), (1, 1))),            # no padding in height
    ((2, 4, 4, 3), (3, 3, 3, 2), ((2, 1), (0, 3))),            # uneven padding
    ((2, 3, 5, 4), (1, 1, 4, 6), "SAME")])                     # the 1x1 head
def test_conv_nhwc_equals_lax_conv_values_and_gradients(x_shape, kernel_shape, padding):
  with jax.enable_x64(True):
    x, kernel = _rand(x_shape, 11), _rand(kernel_shape, 12)

    def plain(x, k):
      return jax.lax.conv_general_dilated(x, k, (1, 1), padding,
                                          dimension_numbers=("NHWC", "HWIO", "NHWC"))

    def ours(x, k):
      return blocks.conv_general_dilated(x, k, (1, 1), padding,
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))

    y_plain, vjp_plain = jax.vjp(plain, x, kernel)
    y_ours, vjp_ours = jax.jit(lambda x, k: jax.vjp(ours, x, k))(x, kernel)
    dy = _rand(y_plain.shape, 13)
    _close(y_ours, y_plain, 1e-12)
    _close(jax.jit(vjp_ours)(dy), vjp_plain(dy), 1e-12)
    # Weight gradient by hand: d kernel[i, j, c, f] = sum x_padded[b, h+i, w+j, c] dy[b, h, w, f].
    pads = (jax.lax.padtype_to_pads(x_shape[1:3], kernel_shape[:2], (1, 1), padding)
            if isinstance(padding, str) else padding)
    xp = np.pad(np.asarray(x), ((0, 0),) + tuple(pads) + ((0, 0),))
    h, w = dy.shape[1:3]
    i, j = kernel_shape[0] - 1, kernel_shape[1] - 1
    by_hand = np.einsum("bhwc,bhwf->cf", xp[:, i:i + h, j:j + w], np.asarray(dy))
    np.testing.assert_allclose(jax.jit(vjp_ours)(dy)[1][i, j], by_hand, rtol=1e-12)


def test_conv_general_dilated_leaves_other_convolutions_to_lax():
  x, kernel = _rand((1, 8, 8, 2), 14, np.float32), _rand((3, 3, 2, 3), 15, np.float32)
  strided = blocks.conv_general_dilated(x, kernel, (2, 2), "SAME",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))
  assert strided.shape == (1, 4, 4, 3)
  np.testing.assert_array_equal(strided, jax.lax.conv_general_dilated(
      x, kernel, (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")))
  # Through conv_nhwc (stride 1), jax.make_jaxpr shows its custom VJP; strided, it does not.
  assert "custom_vjp" in str(jax.make_jaxpr(lambda x: blocks.conv_general_dilated(
      x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")))(x))
  assert "custom_vjp" not in str(jax.make_jaxpr(lambda x: blocks.conv_general_dilated(
      x, kernel, (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")))(x))


def test_accelerators_get_the_plain_formulations(monkeypatch):
  monkeypatch.setattr(blocks, "on_cpu", lambda: False)
  x, kernel = _rand((1, 4, 4, 2), 17, np.float32), _rand((3, 3, 2, 3), 18, np.float32)
  assert "custom_vjp" not in str(jax.make_jaxpr(lambda x: blocks.conv_general_dilated(
      x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")))(x))
  jaxpr = str(jax.make_jaxpr(blocks.channel_sum)(x))
  assert "reshape" not in jaxpr and jaxpr.count("reduce_sum") == 1


def test_unfused_transpose_is_the_transpose_for_any_first_element():
  x = _rand((2, 3, 4, 5), 16, np.float32)
  for first in (1.0, np.nan, np.inf):                          # either branch of its cond
    v = x.at[0, 0, 0, 0].set(first)
    np.testing.assert_array_equal(jax.jit(lambda v: blocks.unfused_transpose(v, (3, 1, 2, 0)))(v),
                                  np.transpose(np.asarray(v), (3, 1, 2, 0)))


def test_batchnorm_relu_train_values_and_gradients_of_all_outputs():
  """Against the two-pass textbook formula by autodiff, with a loss that uses y, mean and var
  (so the hand-written backward pass is checked for every output)."""
  with jax.enable_x64(True):
    x = _rand((3, 4, 5, 6), 0) * 2 + 1
    scale, bias = _rand((6,), 1), _rand((6,), 2)
    w, wm, wv = _rand((3, 4, 5, 6), 3), _rand((6,), 4), _rand((6,), 5)

    def loss(f):
      def run(x, scale, bias):
        y, mean, var = f(x, scale, bias)
        return jnp.sum(w * y) + jnp.sum(wm * mean) + jnp.sum(wv * jnp.sin(var))
      return run
    fast = lambda x, s, b: blocks.batchnorm_relu_train(x, s, b, 1e-5)  # noqa: E731
    _close(fast(x, scale, bias), _plain_bn_relu(x, scale, bias), 1e-12)
    assert np.mean(np.asarray(fast(x, scale, bias)[0]) == 0) > 0.2   # the ReLU mask matters
    _close(jax.grad(loss(fast), (0, 1, 2))(x, scale, bias),
           jax.grad(loss(_plain_bn_relu), (0, 1, 2))(x, scale, bias), 1e-10)


class _FlaxBNReLU(nn.Module):
  use_running_average: bool
  momentum: float
  dtype: object

  @nn.compact
  def __call__(self, x):
    bn = nn.BatchNorm(use_running_average=self.use_running_average, momentum=self.momentum,
                      dtype=self.dtype, name="inner")
    return nn.relu(bn(x))


@pytest.mark.parametrize("train", [True, False])
def test_batchnorm_relu_module_equals_flax_batchnorm_then_relu(train):
  with jax.enable_x64(True):
    x = _rand((2, 4, 3, 5), 0) + 0.5
    fast = blocks.BatchNormReLU(use_running_average=not train, momentum=0.9, dtype=jnp.float64)
    plain = _FlaxBNReLU(not train, 0.9, jnp.float64)
    v = fast.init(jax.random.key(0), x)
    v_plain = plain.init(jax.random.key(0), x)
    assert jax.tree.map(jnp.shape, {"params": v["params"], "batch_stats": v["batch_stats"]}) == \
        jax.tree.map(jnp.shape, {k: v_plain[k]["inner"] for k in ("params", "batch_stats")})
    v = {"params": {"scale": _rand((5,), 1), "bias": _rand((5,), 2)},
         "batch_stats": {"mean": _rand((5,), 3), "var": jnp.abs(_rand((5,), 4)) + 0.1}}
    v_plain = {k: {"inner": v[k]} for k in v}
    y, upd = fast.apply(v, x, mutable=["batch_stats"])
    y_plain, upd_plain = plain.apply(v_plain, x, mutable=["batch_stats"])
    _close(y, y_plain, 1e-12)
    _close(upd["batch_stats"], upd_plain["batch_stats"]["inner"], 1e-12)
    w = _rand(x.shape, 5)
    g = jax.grad(lambda p, x: jnp.sum(w * fast.apply({**v, "params": p}, x,
                                                     mutable=["batch_stats"])[0]), (0, 1))
    g_plain = jax.grad(lambda p, x: jnp.sum(w * plain.apply(
        {**v_plain, "params": {"inner": p}}, x, mutable=["batch_stats"])[0]), (0, 1))
    gp, gx = g(v["params"], x)
    gp_plain, gx_plain = g_plain(v["params"], x)
    _close((gp, gx), (gp_plain, gx_plain), 1e-10)


def test_segnet_equals_segnet_of_plain_flax_layers():
  """With models/reference.py's plain Flax layers and argmax pooling swapped in: same variables
  (tree, initial values), logits, BatchNorm updates and gradients, float32 at rtol 1e-5 of each
  tensor's largest magnitude. The transposed-conv + skip variant uses every swapped layer (the
  unpooling is checked against its reference in tests/models/test_pooling.py)."""
  model = segnet.SegNet(widths=(4, 8), num_classes=3, upsample="transpose", skip=True)
  x = jnp.asarray(np.random.default_rng(0).uniform(size=(2, 8, 12)).astype(np.float32))
  w = _rand((2, 8, 12, 3), 1, np.float32)

  def outputs(m):
    v = m.init(jax.random.key(0), x, train=False)

    def loss(params):
      logits, upd = m.apply({"params": params, "batch_stats": v["batch_stats"]}, x, train=True,
                            mutable=["batch_stats"])
      return jnp.sum(w * logits), (logits, upd)
    (_, (logits, upd)), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(v["params"])
    return v, logits, upd, grads, jax.jit(lambda v: m.apply(v, x, train=False))(v)

  fast = outputs(model)
  # Flax's initialiser is compared with ours above (each of its rank-4 draws compiles for
  # seconds on CPU); the transposed convolutions here still draw with Flax's.
  with reference.plain_segnet(tuple(r for r in reference.REWRITES if r != "init")):
    plain = outputs(segnet.SegNet(widths=(4, 8), num_classes=3, upsample="transpose", skip=True))
  assert jax.tree.structure(fast[0]) == jax.tree.structure(plain[0])
  for a, b in zip(fast, plain):
    _close(a, b, 1e-5)

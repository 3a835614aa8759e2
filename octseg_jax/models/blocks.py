"""Faster equivalents of Flax layers and lax operations, with the same parameters, initialisation
and values.

  UpConv2x2             = nn.ConvTranspose(features, (2, 2), strides=(2, 2))
  BatchNormReLU         = nn.relu(nn.BatchNorm(momentum=..., epsilon=...)(x))
  conv_general_dilated  = lax.conv_general_dilated (nn.Conv's), with its own backward pass on CPU
  channel_sum           = jnp.sum(x, (0, 1, 2), keepdims=True), on CPU as a sum of wide rows
  lecun_normal          = nn.initializers.lecun_normal(), drawn as one flat vector

XLA on CPU runs the 2x2 stride-2 transposed convolution as an input-dilated convolution whose
backward pass is slow (about a third of a skip + transposed-conv SegNet step); as one matmul to
4 x features channels and a depth-to-space reshape it is plain GEMMs forward and backward.
BatchNormReLU computes the batch statistics in one pass (E[x], E[x^2], like Flax's fast variance)
and has a hand-written backward pass (two per-channel sums instead of the autodiff graph through
the statistics); its four per-channel sums are channel_sum's. The convolutions' backward pass is
the one XLA derives, except that the transposes feeding the gradient convolutions run on their
own (unfused_transpose) instead of fused with the BatchNorm and ReLU that produce their operands.
The last two change nothing on accelerators. lecun_normal draws the same numbers as Flax's
(partitionable threefry gives element i the same bits whatever the shape): XLA on CPU compiles a
rank-4 truncated-normal draw in seconds, a flat one in a tenth of that, and a model's
initialisation compiles one draw per kernel shape. All are tested against the plain formulations
(values and gradients, float64) in tests/models/test_blocks.py; their A/B step timings are in
docs/results/cpu_2core/ab_*.json (benchmarks/ab_layers.py --plain=...).
"""

import functools
import math
from typing import Any, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

_AXES = (0, 1, 2)   # reduction axes of [B, H, W, C]


def lecun_normal(key, shape, dtype=jnp.float32):
  """nn.initializers.lecun_normal()(key, shape, dtype), value for value: a truncated normal on
  (-2, 2) scaled to variance 1 / fan_in (fan_in: the product of all but the last axis), drawn
  flat and reshaped. Equal to Flax's under jax_threefry_partitionable (JAX's default)."""
  size = math.prod(shape)
  variance = jnp.array(1.0 / (size // shape[-1]), dtype)
  stddev = jnp.sqrt(variance) / jnp.array(.87962566103423978, dtype)
  return jax.random.truncated_normal(key, -2, 2, (size,), dtype).reshape(shape) * stddev


class UpConv2x2(nn.Module):
  """x [B, h, w, C] -> [B, 2h, 2w, features]; parameters kernel [2, 2, C, features], bias."""
  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    b, h, w, c = x.shape
    kernel = self.param("kernel", lecun_normal, (2, 2, c, self.features),
                        jnp.float32)
    bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    # nn.ConvTranspose (lax.conv_transpose, kernel not transposed) puts kernel[1 - a, 1 - b] at
    # offset (a, b) of each output 2x2 block.
    k = kernel[::-1, ::-1].transpose(2, 0, 1, 3).reshape(c, 4 * self.features)  # [C, (a b F)]
    y = jnp.dot(x.reshape(b * h * w, c), k).reshape(b, h, w, 2, 2, self.features)
    y = y.transpose(0, 1, 3, 2, 4, 5).reshape(b, 2 * h, 2 * w, self.features)
    return y + bias.reshape(1, 1, 1, self.features)


_NHWC = ("NHWC", "HWIO", "NHWC")


def on_cpu() -> bool:
  """Whether JAX computes on the CPU: channel_sum and conv_general_dilated rewrite only there
  (they work around XLA's CPU code generation; elsewhere the plain formulation runs)."""
  return jax.default_backend() == "cpu"


def unfused_transpose(x, perm):
  """jnp.transpose(x, perm), computed on its own. XLA on CPU otherwise fuses a transpose with the
  elementwise ops that produce its operand (here BatchNorm and ReLU, recomputed), and that fused
  loop reads the operand with a stride: several times slower than transposing the stored one. A
  cond whose two branches are the same transpose keeps the operand stored and the transpose a
  transpose; its value is jnp.transpose(x, perm) whatever the predicate."""
  def t(v):
    return jnp.transpose(v, perm)
  return jax.lax.cond(jnp.isfinite(x[(0,) * x.ndim]), t, t, x)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv_nhwc(x, kernel, padding):
  """lax.conv_general_dilated(x, kernel, (1, 1), padding) for x [B, H, W, C], kernel [kh, kw, C,
  F], padding ((lo, hi), (lo, hi)): stride 1, no dilation, no groups. Its gradients are the
  convolutions XLA derives, with the transposes that feed them (activation, output gradient,
  kernel) done as plain transposes (unfused_transpose)."""
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), padding, dimension_numbers=_NHWC)


def _conv_forward(x, kernel, padding):
  # symbolic_zeros: x and kernel come as CustomVJPPrimal; an input gradient is computed only
  # where x is differentiated (not for the network's input image).
  x_needs_grad = x.perturbed
  x, kernel = x.value, kernel.value
  return conv_nhwc(x, kernel, padding), (x, kernel, x_needs_grad)


def _conv_backward(padding, residuals, dy):
  x, kernel, x_needs_grad = residuals
  if isinstance(dy, jax.custom_derivatives.SymbolicZero):
    return None, None
  kh, kw = kernel.shape[:2]
  # d x: dy convolved with the kernel flipped in space, its in/out channels swapped.
  dx = None
  if x_needs_grad:
    flipped = unfused_transpose(kernel[::-1, ::-1], (0, 1, 3, 2))
    (lo_h, hi_h), (lo_w, hi_w) = padding
    dx = jax.lax.conv_general_dilated(
        dy, flipped, (1, 1), ((kh - 1 - lo_h, kh - 1 - hi_h), (kw - 1 - lo_w, kw - 1 - hi_w)),
        dimension_numbers=_NHWC).astype(x.dtype)
  # d kernel[i, j, c, f] = sum over b, h, w of x_padded[b, h + i, w + j, c] dy[b, h, w, f]: a
  # convolution of x as [C, H, W, B] (channels as its batch) with dy as [H, W, B, F].
  dk = jax.lax.conv_general_dilated(unfused_transpose(x, (3, 1, 2, 0)),
                                    unfused_transpose(dy, (1, 2, 0, 3)), (1, 1), padding,
                                    dimension_numbers=_NHWC)
  return dx, jnp.transpose(dk, (1, 2, 0, 3)).astype(kernel.dtype)


conv_nhwc.defvjp(_conv_forward, _conv_backward, symbolic_zeros=True)


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                         precision=None):
  """lax.conv_general_dilated as nn.Conv calls it (its `conv_general_dilated` field), through
  conv_nhwc for the stride-1, undilated, ungrouped 2-D NHWC convolutions of ConvBlock and the
  head on the CPU; any other convolution, and every convolution on an accelerator, goes to lax
  as it is."""
  rewritable = (on_cpu() and lhs.ndim == 4 and precision is None and feature_group_count == 1
                and tuple(window_strides) == (1, 1)
                and all(d in (None, 1) for d in (lhs_dilation or ()))
                and all(d in (None, 1) for d in (rhs_dilation or ()))
                and jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
                == jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC))
  if not rewritable:
    return jax.lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
        dimension_numbers=dimension_numbers, feature_group_count=feature_group_count,
        precision=precision)
  if isinstance(padding, str):
    padding = jax.lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], (1, 1), padding)
  return conv_nhwc(lhs, rhs, tuple((int(lo), int(hi)) for lo, hi in padding))


def _channels(v):
  """[C] -> [1, 1, 1, C], to broadcast against [B, H, W, C]."""
  return v.reshape(1, 1, 1, -1)


_SUM_ROW_WIDTH = 1024   # elements per row of channel_sum's [rows, k * C] view


def channel_sum(x):
  """Per-channel sum [1, 1, 1, C] of x [B, H, W, C]: the pixels are summed as the rows of a
  [B*H*W / k, k*C] view (k = 1024 // C where it divides) and the k partial sums then folded.
  Equal to jnp.sum(x, (0, 1, 2), keepdims=True) up to summation order; XLA on CPU reduces the
  wide rows faster than the [B*H*W, C] columns (benchmarks/ab_layers.py --plain=channel_sum)."""
  b, h, w, c = x.shape
  k = max(1, _SUM_ROW_WIDTH // c)
  if (b * h * w) % k or not on_cpu():
    return jnp.sum(x, _AXES, keepdims=True)
  return jnp.sum(x.reshape(-1, k * c), 0).reshape(k, c).sum(0).reshape(1, 1, 1, c)


def _batch_stats(x):
  """Per-channel mean and biased variance [1, 1, 1, C] of x [B, H, W, C], at least float32."""
  x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
  n = x.size // x.shape[-1]
  mean = channel_sum(x) / n
  mean_sq = channel_sum(jnp.square(x)) / n
  return mean, jnp.maximum(0.0, mean_sq - jnp.square(mean))


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def batchnorm_relu_train(x, scale, bias, epsilon: float):
  """relu((x - mean) * rsqrt(var + epsilon) * scale + bias) with the batch's statistics.

  x [B, H, W, C]; scale, bias [C]. Returns (y like x, mean [C], var [C]) (mean, var float32).
  """
  return _bn_forward(x, scale, bias, epsilon)[0]


def _bn_forward(x, scale, bias, epsilon):
  mean, var = _batch_stats(x)                                  # [1, 1, 1, C]
  inv = jax.lax.rsqrt(var + epsilon)
  y = jnp.maximum((x - mean) * (inv * _channels(scale)) + _channels(bias), 0).astype(x.dtype)
  return (y, mean.ravel(), var.ravel()), (x, mean, inv, scale, y)


def _bn_backward(epsilon, residuals, cotangents) -> Tuple:
  x, mean, inv, scale, y = residuals
  dy, dmean, dvar = cotangents
  n = x.size // x.shape[-1]
  dz = jnp.where(y > 0, dy, 0).astype(mean.dtype)             # through the ReLU
  centred = x - mean
  d_bias = channel_sum(dz)                                     # [1, 1, 1, C]
  d_scale = channel_sum(dz * centred) * inv
  del epsilon                                                 # inside inv already
  # Through the normalisation (x_hat = centred * inv), then the mean and var outputs' own
  # cotangents (d mean / dx = 1/n, d var / dx = 2 (x - mean) / n).
  dx = (_channels(scale) * inv) * (dz - (d_bias + centred * (inv * d_scale)) / n)
  dx = dx + (_channels(dmean) + 2 * _channels(dvar) * centred) / n
  return (dx.astype(x.dtype), d_scale.ravel().astype(scale.dtype),
          d_bias.ravel().astype(scale.dtype))


batchnorm_relu_train.defvjp(_bn_forward, _bn_backward)


class BatchNormReLU(nn.Module):
  """nn.relu(nn.BatchNorm(...)(x)) over [B, H, W, C] with the same variables: params scale and
  bias, batch_stats mean and var (updated as mean <- momentum mean + (1 - momentum) batch mean)."""
  use_running_average: bool
  momentum: float = 0.99
  epsilon: float = 1e-5
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    scale = self.param("scale", nn.initializers.ones_init(), (c,), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros_init(), (c,), jnp.float32)
    ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((c,), jnp.float32))
    ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((c,), jnp.float32))
    x = x.astype(self.dtype)
    if self.use_running_average:
      inv = jax.lax.rsqrt(_channels(ra_var.value) + self.epsilon)
      y = (x - _channels(ra_mean.value)) * (inv * _channels(scale)) + _channels(bias)
      return jnp.maximum(y, 0).astype(self.dtype)
    y, mean, var = batchnorm_relu_train(x, scale, bias, self.epsilon)
    if not self.is_initializing():
      ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
      ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
    return y

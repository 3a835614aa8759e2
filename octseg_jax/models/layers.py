"""Faster equivalents of two Flax layers, with the same parameters, initialisation and values.

  UpConv2x2      = nn.ConvTranspose(features, (2, 2), strides=(2, 2))
  BatchNormReLU  = nn.relu(nn.BatchNorm(momentum=..., epsilon=...)(x))

XLA on CPU runs the 2x2 stride-2 transposed convolution as an input-dilated convolution whose
backward pass is slow (about a third of a skip + transposed-conv SegNet step); as one matmul to
4 x features channels and a depth-to-space reshape it is plain GEMMs forward and backward.
BatchNormReLU computes the batch statistics in one pass (E[x], E[x^2], like Flax's fast variance)
and has a hand-written backward pass (two per-channel sums instead of the autodiff graph through
the statistics). Both are tested against the Flax layers (values and gradients, float64) in
tests/test_layers.py.
"""

import functools
from typing import Any, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

_AXES = (0, 1, 2)   # reduction axes of [B, H, W, C]


class UpConv2x2(nn.Module):
  """x [B, h, w, C] -> [B, 2h, 2w, features]; parameters kernel [2, 2, C, features], bias."""
  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    b, h, w, c = x.shape
    kernel = self.param("kernel", nn.initializers.lecun_normal(), (2, 2, c, self.features),
                        jnp.float32)
    bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    # nn.ConvTranspose (lax.conv_transpose, kernel not transposed) puts kernel[1 - a, 1 - b] at
    # offset (a, b) of each output 2x2 block.
    k = kernel[::-1, ::-1].transpose(2, 0, 1, 3).reshape(c, 4 * self.features)  # [C, (a b F)]
    y = jnp.dot(x.reshape(b * h * w, c), k).reshape(b, h, w, 2, 2, self.features)
    y = y.transpose(0, 1, 3, 2, 4, 5).reshape(b, 2 * h, 2 * w, self.features)
    return y + bias.reshape(1, 1, 1, self.features)


def _channels(v):
  """[C] -> [1, 1, 1, C], to broadcast against [B, H, W, C]."""
  return v.reshape(1, 1, 1, -1)


def _batch_stats(x):
  """Per-channel mean and biased variance [1, 1, 1, C] of x [B, H, W, C], at least float32."""
  x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
  mean = jnp.mean(x, _AXES, keepdims=True)
  mean_sq = jnp.mean(jnp.square(x), _AXES, keepdims=True)
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
  d_bias = jnp.sum(dz, _AXES, keepdims=True)                   # [1, 1, 1, C]
  d_scale = jnp.sum(dz * centred, _AXES, keepdims=True) * inv
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

"""SegNet encoder-decoder with pooling-index unpooling (Badrinarayanan et al. 2017), as used
by the Enhanced SegNet paper for OCT layers.

Layer names are stable so that Grad-CAM can address any of them:
  enc{i}_conv{j}  encoder level i (0 = full resolution), conv j (0-based), after ReLU
  dec{i}_conv{j}  decoder level i, conv j, after ReLU (dec0_conv1 is the last decoder conv)
  dec{i}_up       transposed-conv upsampling (only with upsample='transpose'; the variables of
                  nn.ConvTranspose(w, (2, 2), strides=(2, 2)), computed as one matmul)
  head            1x1 conv to the class logits
  fluid_head      1x1 conv to the fluid logit (model.fluid_head; a separate sigmoid channel,
                  since fluid overlaps layers)
  boundary_conv{j} the boundary head's own conv blocks (model.boundary_head_convs), between
                  the last decoder features and its 1x1 conv
  boundary_head   1x1 conv to one row-logit map per boundary (model.boundary_head): per column,
                  a softmax over rows (within model.boundary_window rows of the peak) whose
                  expectation is the boundary row, ordered by construction (models/heads.py)

`__call__` returns the class logits (what Grad-CAM, inference and the paper use); `outputs`
returns every head's output in a dict. Both build the same variables.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from octseg_jax.anatomy import NUM_BOUNDARIES
from octseg_jax.models import heads
from octseg_jax.models.blocks import BatchNormReLU, UpConv2x2, conv_general_dilated, lecun_normal
from octseg_jax.models.pooling import max_pool_with_argmax, max_unpool

CLASS_HEAD = "head"      # the 1x1 conv to the class logits (Grad-CAM's last module)

UPSAMPLING = ("unpool", "transpose")


def with_position_channel(x):
  """[B, H, W, C] -> [B, H, W, C + 1]: the last channel is row / (H - 1), 0 at the top row and
  1 at the bottom, the same in every column (the relative depth in the model input)."""
  b, h, w, _ = x.shape
  rows = jnp.arange(h, dtype=x.dtype) / max(h - 1, 1)                       # [H]
  return jnp.concatenate([x, jnp.broadcast_to(rows[None, :, None, None], (b, h, w, 1))], -1)


class ConvBlock(nn.Module):
  """kernel conv (3x3 by default), optional BatchNorm, ReLU. Its output is what Grad-CAM
  intercepts.

  Variables as with nn.Conv (Conv_0) and nn.BatchNorm (BatchNorm_0); BatchNorm and ReLU run as
  one layer with a hand-written backward pass (models/layers.py)."""
  features: int
  use_batchnorm: bool = True
  dtype: Any = jnp.float32
  kernel: Sequence[int] = (3, 3)

  @nn.compact
  def __call__(self, x, train: bool):
    x = nn.Conv(self.features, tuple(self.kernel), use_bias=not self.use_batchnorm,
                dtype=self.dtype, conv_general_dilated=conv_general_dilated,
                kernel_init=lecun_normal)(x)
    if not self.use_batchnorm:
      return nn.relu(x)
    # Statistics in float32 even under bfloat16 compute.
    return BatchNormReLU(use_running_average=not train, momentum=0.9, dtype=self.dtype,
                         name="BatchNorm_0")(x)


class SegNet(nn.Module):
  """x [B, H, W] or [B, H, W, 1] in [0, 1] -> logits [B, H, W, num_classes] (float32).

  H and W must be multiples of 2 ** len(widths).
  """
  widths: Sequence[int] = (64, 128, 256, 512, 512)
  num_classes: int = 8
  convs_per_block: int = 2
  use_batchnorm: bool = True
  upsample: str = "unpool"        # 'unpool' (SegNet, pooling indices) or 'transpose'
  skip: bool = False              # concatenate the encoder features before decoding
  dtype: Any = jnp.float32        # compute dtype; parameters stay float32
  kernel: Sequence[int] = (3, 3)  # (rows, cols) of every conv block; ReLayNet uses (7, 3)
  position_channel: bool = False  # add row / (H - 1) as a second input channel (LF-UNet)
  fluid_head: bool = False        # a fluid logit [B, H, W] next to the class logits
  boundary_head: bool = False     # ordered soft-argmax boundary rows [B, 8, W]
  boundary_head_convs: int = 0    # the boundary head's own conv blocks (0: the shared features)
  boundary_window: int = 0        # soft-argmax over rows within this of the peak (0: all rows)

  def __call__(self, x, train: bool = False):
    """Class logits [B, H, W, num_classes] (float32)."""
    return self.outputs(x, train)["classes"]

  @nn.compact
  def outputs(self, x, train: bool = False):
    """{'classes': logits [B, H, W, K]} plus, with the heads, 'fluid' (logit [B, H, W]),
    'boundary_logits' (row logits [B, H, W, 8]) and 'boundaries' (ordered rows [B, 8, W]),
    all float32."""
    if self.upsample not in UPSAMPLING:
      raise ValueError(f"unknown upsample {self.upsample!r}; valid: {UPSAMPLING}")
    if x.ndim == 3:
      x = x[..., None]
    x = x.astype(self.dtype)
    if self.position_channel:
      x = with_position_channel(x)
    depth = len(self.widths)
    skips, indices = [], []
    for i, width in enumerate(self.widths):                      # encoder
      for j in range(self.convs_per_block):
        x = ConvBlock(width, self.use_batchnorm, self.dtype, self.kernel, name=f"enc{i}_conv{j}")(x, train)
      skips.append(x)
      x, idx = max_pool_with_argmax(x)
      indices.append(idx)
    for i in reversed(range(depth)):                             # decoder
      if self.upsample == "unpool":
        x = max_unpool(x, indices[i])
      else:
        x = UpConv2x2(self.widths[i], self.dtype, name=f"dec{i}_up")(x)
      if self.skip:
        x = jnp.concatenate([x, skips[i]], axis=-1)
      out_width = self.widths[max(i - 1, 0)]
      for j in range(self.convs_per_block):
        width = self.widths[i] if j < self.convs_per_block - 1 else out_width
        x = ConvBlock(width, self.use_batchnorm, self.dtype, self.kernel, name=f"dec{i}_conv{j}")(x, train)
    logits = nn.Conv(self.num_classes, (1, 1), dtype=self.dtype, name=CLASS_HEAD,
                     conv_general_dilated=conv_general_dilated, kernel_init=lecun_normal)(x)
    # Loss and softmax in at least float32, also under bfloat16 compute.
    out_dtype = jnp.promote_types(self.dtype, jnp.float32)
    out = {"classes": logits.astype(out_dtype)}
    if self.fluid_head:
      fluid = nn.Conv(1, (1, 1), dtype=self.dtype, name="fluid_head", kernel_init=lecun_normal)(x)
      out["fluid"] = fluid[..., 0].astype(out_dtype)
    if self.boundary_head:
      features = x
      for j in range(self.boundary_head_convs):
        features = ConvBlock(self.widths[0], self.use_batchnorm, self.dtype, self.kernel,
                             name=f"boundary_conv{j}")(features, train)
      rows = nn.Conv(NUM_BOUNDARIES, (1, 1), dtype=self.dtype, name="boundary_head",
                     kernel_init=lecun_normal)(features)
      out["boundary_logits"] = rows.astype(out_dtype)
      out["boundaries"] = heads.ordered_boundaries(out["boundary_logits"],
                                                   self.boundary_window)
    return out

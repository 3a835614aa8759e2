"""FLOPs of a SegNet training step: an analytic count of its convolutions, and XLA's count of
the same convolutions for a cross-check.

The analytic count is what the GPU FLOP/s figures use: after GPU compilation convolutions
become cuDNN calls that XLA's cost analysis does not count, so the compiled (or even lowered)
program's "flops" on CUDA misses most of the work. One training step is the forward pass, the
weight gradient of every convolution and the input gradient of every convolution but the first
(the image needs no gradient): forward + 2 x backward, less the first layer's input gradient.

A FLOP is one multiply or one add (a multiply-accumulate is 2 FLOPs). Two conventions:
  count_padding=True   every kernel tap of every output pixel, zero padding included: the dense
                       count usually quoted for achieved FLOP/s.
  count_padding=False  only taps that land on a real input pixel: what XLA's cost analysis
                       counts (HloCostAnalysis skips padding and dilation holes).
"""

from typing import Callable, List, NamedTuple, Sequence, Tuple

import jax
from jax import lax


class Conv(NamedTuple):
  """One convolution of the forward pass (per image).

  in_hw: input height, width; kernel: (kh, kw); stride: 1 (SAME padding) or the kernel size of
  a transposed convolution that upsamples by its stride (each input pixel feeds kh x kw outputs).
  """
  in_hw: Tuple[int, int]
  kernel: Tuple[int, int]
  in_channels: int
  out_channels: int
  transposed: bool = False


def segnet_convs(widths: Sequence[int], num_classes: int, convs_per_block: int, upsample: str,
                 skip: bool, input_hw: Tuple[int, int], in_channels: int = 1,
                 kernel: Tuple[int, int] = (3, 3)) -> List[Conv]:
  """The convolutions of octseg_jax.models.segnet.SegNet, in forward order."""
  convs, channels = [], in_channels
  h, w = input_hw
  for width in widths:                                            # encoder
    for _ in range(convs_per_block):
      convs.append(Conv((h, w), tuple(kernel), channels, width))
      channels = width
    h, w = h // 2, w // 2
  for i in reversed(range(len(widths))):                          # decoder
    if upsample == "transpose":
      convs.append(Conv((h, w), (2, 2), channels, widths[i], transposed=True))
      channels = widths[i]
    h, w = h * 2, w * 2
    if skip:
      channels += widths[i]
    out_width = widths[max(i - 1, 0)]
    for j in range(convs_per_block):
      width = widths[i] if j < convs_per_block - 1 else out_width
      convs.append(Conv((h, w), tuple(kernel), channels, width))
      channels = width
  convs.append(Conv((h, w), (1, 1), channels, num_classes))       # head
  return convs


def _taps_1d(n: int, k: int, transposed: bool, count_padding: bool) -> int:
  """Kernel taps summed over the output positions of one spatial axis of length n (input)."""
  if transposed or k == 1 or count_padding:
    return n * k
  pad = (k - 1) // 2, k - 1 - (k - 1) // 2                        # SAME, stride 1
  return n * k - sum(p * (p + 1) // 2 for p in pad)


def conv_flops(conv: Conv, batch: int, count_padding: bool = True) -> int:
  """Forward FLOPs of one convolution over a batch (2 per multiply-accumulate)."""
  taps = (_taps_1d(conv.in_hw[0], conv.kernel[0], conv.transposed, count_padding) *
          _taps_1d(conv.in_hw[1], conv.kernel[1], conv.transposed, count_padding))
  return 2 * batch * taps * conv.in_channels * conv.out_channels


def train_step_conv_flops(convs: Sequence[Conv], batch: int, count_padding: bool = True) -> int:
  """Convolution FLOPs of one training step: forward, weight gradients, and input gradients
  of all but the first convolution (each costs as much as the forward convolution)."""
  forward = [conv_flops(c, batch, count_padding) for c in convs]
  return 3 * sum(forward) - forward[0]


def model_convs(model_config, input_hw: Tuple[int, int]) -> List[Conv]:
  """segnet_convs for a config's `model` section (ml_collections or dict)."""
  m = dict(model_config)
  return segnet_convs(tuple(m["widths"]), int(m["num_classes"]), int(m["convs_per_block"]),
                      m["upsample"], bool(m["skip"]), tuple(input_hw),
                      in_channels=1 + int(bool(m.get("position_channel", False))),
                      kernel=tuple(m.get("kernel", (3, 3))))


def model_train_step_conv_flops(model_config, batch: int, input_hw: Tuple[int, int],
                                count_padding: bool = True) -> int:
  """train_step_conv_flops for a config's `model` section (ml_collections or dict)."""
  return train_step_conv_flops(model_convs(model_config, input_hw), batch, count_padding)


def _conv_equations(jaxpr):
  """Every conv_general_dilated and dot_general equation of a jaxpr, nested jaxprs included
  (the model's 2x2 transposed convolution runs as one matmul, models/layers.py; the SegNet has
  no other matmul)."""
  for eqn in jaxpr.eqns:
    if eqn.primitive in (lax.conv_general_dilated_p, lax.dot_general_p):
      yield eqn
    for param in eqn.params.values():
      for sub in param if isinstance(param, (list, tuple)) else (param,):
        inner = getattr(sub, "jaxpr", sub)          # ClosedJaxpr -> Jaxpr
        if hasattr(inner, "eqns"):
          yield from _conv_equations(inner)


def xla_conv_flops(fn: Callable, *args) -> float:
  """XLA's cost-analysis FLOPs of the convolutions (and matmuls) alone in fn(*args).

  args may be jax.ShapeDtypeStruct pytrees: nothing runs. Each convolution of fn's jaxpr is
  lowered on its own (current backend, before optimisation) and its "flops" summed; other
  operations (BatchNorm, pooling, the loss, Adam) are left out.
  """
  total, seen = 0.0, {}
  for eqn in _conv_equations(jax.make_jaxpr(fn)(*args).jaxpr):
    avals = [jax.ShapeDtypeStruct(v.aval.shape, v.aval.dtype) for v in eqn.invars]
    key = repr((eqn.primitive, avals, sorted(eqn.params.items())))
    if key not in seen:                    # a step repeats shapes; lower each kind once
      one = jax.jit(lambda lhs, rhs, p=eqn.params, prim=eqn.primitive: prim.bind(lhs, rhs, **p))
      cost = one.lower(*avals).cost_analysis()
      seen[key] = float((cost[0] if isinstance(cost, (list, tuple)) else cost)["flops"])
    total += seen[key]
  return total

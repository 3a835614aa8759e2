"""Where a training step's convolution time goes: forward, input-gradient and weight-gradient
throughput of single 3x3 convolutions, octseg_jax's XLA (with the project's CPU flags) and,
when torch is installed, PyTorch on the same shapes, in one process.

  python benchmarks/conv_grads.py --out=docs/results/cpu_2core/conv_grads.json

Shapes are the layers of the README's comparison rows (N, H, W, C_in, C_out). GFLOP/s counts
2 * N * H * W * 9 * C_in * C_out per pass (each of the three passes costs the same work).
"""

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from octseg_jax.runtime import xla_setup  # noqa: E402

xla_setup.apply_cpu_flags()

import jax  # noqa: E402
import numpy as np  # noqa: E402
from jax import lax  # noqa: E402

from octseg_jax.runtime.timing import time_fn  # noqa: E402

SHAPES = ((8, 256, 256, 16, 16), (8, 128, 128, 32, 32), (4, 256, 256, 64, 64),
          (4, 64, 64, 256, 256), (4, 16, 16, 512, 512))


def best_of(fn, repeats: int) -> float:
  """Fastest of `repeats` calls after one warm-up call (seconds)."""
  return time_fn(fn, repeats, warmup=1)["min_s"]


def jax_passes(x, k, dy, repeats: int) -> dict:
  """Seconds of the forward convolution, its input gradient and its weight gradient."""
  def conv(x, k):
    return lax.conv_general_dilated(x, k, (1, 1), "SAME",
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))
  fwd = jax.jit(conv)
  igrad = jax.jit(lambda x, k, dy: jax.vjp(lambda x: conv(x, k), x)[1](dy)[0])
  wgrad = jax.jit(lambda x, k, dy: jax.vjp(lambda k: conv(x, k), k)[1](dy)[0])
  return {"forward": best_of(lambda: fwd(x, k).block_until_ready(), repeats),
          "input_grad": best_of(lambda: igrad(x, k, dy).block_until_ready(), repeats),
          "weight_grad": best_of(lambda: wgrad(x, k, dy).block_until_ready(), repeats)}


def torch_passes(torch, x, k, dy, repeats: int) -> dict:
  """The same three passes in PyTorch (NCHW, as benchmarks/torch_segnet.py runs its model)."""
  xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
  kt = torch.from_numpy(np.ascontiguousarray(k.transpose(3, 2, 0, 1)))
  dyt = torch.from_numpy(np.ascontiguousarray(dy.transpose(0, 3, 1, 2)))
  f = torch.nn.functional
  grad = torch.nn.grad
  with torch.no_grad():
    return {"forward": best_of(lambda: f.conv2d(xt, kt, padding=1), repeats),
            "input_grad": best_of(lambda: grad.conv2d_input(xt.shape, kt, dyt, padding=1),
                                  repeats),
            "weight_grad": best_of(lambda: grad.conv2d_weight(xt, kt.shape, dyt, padding=1),
                                   repeats)}


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--threads", type=int, default=2, help="PyTorch threads")
  p.add_argument("--out")
  a = p.parse_args()
  try:
    import torch
    torch.set_num_threads(a.threads)
  except ImportError:
    torch = None
  rng = np.random.default_rng(0)
  rows = []
  for n, h, w, ci, co in SHAPES:
    x = rng.standard_normal((n, h, w, ci)).astype(np.float32)
    k = (rng.standard_normal((3, 3, ci, co)) / np.sqrt(9 * ci)).astype(np.float32)
    dy = rng.standard_normal((n, h, w, co)).astype(np.float32)
    gflop = 2 * n * h * w * 9 * ci * co / 1e9
    row = {"shape_nhwc_in_out": [n, h, w, ci, co], "gflop_per_pass": gflop,
           "octseg_jax_s": jax_passes(x, k, dy, a.repeats)}
    if torch is not None:
      row["pytorch_s"] = torch_passes(torch, x, k, dy, a.repeats)
    rows.append(row)
    print(json.dumps({key: (v if not isinstance(v, dict) else
                            {p_: round(gflop / s, 1) for p_, s in v.items()})
                      for key, v in row.items()}), flush=True)
  result = {"what": __doc__.splitlines()[0], "unit": "seconds per pass (best of repeats)",
            "jax": jax.__version__, "xla_flags": os.environ.get("XLA_FLAGS", ""),
            "torch": None if torch is None else torch.__version__,
            "torch_threads": a.threads, "cpu_count": os.cpu_count(), "rows": rows,
            "load_average_after": list(os.getloadavg())}
  if a.out:
    from octseg_jax.outputs.atomic import write_json
    write_json(a.out, result)


if __name__ == "__main__":
  main()

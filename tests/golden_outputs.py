"""Golden outputs of the redesign issue: what the package computes on fixed inputs, stored in
tests/golden/ so that a move of code that claims "behaviour unchanged" is checked.

  OCTSEG_WRITE_GOLDEN=1 python -m pytest -q tests/test_golden.py   # rewrite tests/golden/
                                        # (only when a change of behaviour is intended; say
                                        # so in the commit)

tests/test_golden.py recomputes them under the suite's settings (its shared tiny training)
and compares: labels exactly (a few ties may flip on another CPU: at most GOLDEN_FLIPS of the
pixels), floats at rtol 1e-4.
"""

import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
GOLDEN = os.path.join(HERE, "golden")
GOLDEN_FLIPS = 1e-4            # share of label pixels that may differ across CPU models


def phantom_inputs(folder: str) -> dict:
  """Two fixed input files: a phantom .npz, and the same kind of scans as a Duke-format .mat
  (the original release's layout, written with scipy)."""
  import numpy as np
  import scipy.io
  from octseg_jax.data import synthetic
  from octseg_jax.outputs.atomic import write_npz
  a = synthetic.generate(2, 496, 512, seed=21)
  npz = os.path.join(folder, "phantom.npz")
  write_npz(npz, images=a.images)
  b = synthetic.generate(1, 496, 512, seed=22)
  mat = os.path.join(folder, "Subject_01.mat")
  scipy.io.savemat(mat, {"images": np.moveaxis(b.images, 0, -1)})
  return {"npz": npz, "mat": mat}


def predictions(folder: str) -> dict:
  """pretrained/'s prediction arrays on the two inputs."""
  import numpy as np
  from octseg_jax.modes import predict
  files = phantom_inputs(folder)
  out = {}
  for kind, path in files.items():
    predict.run(os.path.join(ROOT, "pretrained"), path, os.path.join(folder, f"out_{kind}"),
                figures="none")
    stem = os.path.splitext(os.path.basename(path))[0]
    with np.load(os.path.join(folder, f"out_{kind}", f"{stem}.npz")) as d:
      out.update({f"{kind}_{k}": d[k] for k in ("pred", "pred_ordered", "boundaries", "fluid")
                  if k in d.files})
  return out


def explain_stats(workdir: str, folder: str) -> dict:
  """cam_stats.json of explain (gradcam at the config's layers) on a fixed phantom scan."""
  from octseg_jax.modes import explain
  from octseg_jax.data import synthetic
  from octseg_jax.outputs.atomic import write_npz
  s = synthetic.generate(1, 96, 64, seed=23)
  path = os.path.join(folder, "explain_in.npz")
  write_npz(path, images=s.images, masks=s.masks)
  explain.run(workdir, path, os.path.join(folder, "explain_out"))
  with open(os.path.join(folder, "explain_out", "cam_stats.json")) as f:
    return json.load(f)

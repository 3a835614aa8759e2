"""Writes phantom OCT scans with their masks, to try predict, eval and explain without data:

  python scripts/make_phantom.py --output=runs/new_scans.npz [--num_scans=4] [--height=496]
      [--width=512] [--seed=1] [--volume [--shape=curved|flat]]

The scans are the training phantom's (octseg_jax/data/synthetic.py) in the shared .npz format
(images, masks, subject); with --volume one eye's volume (B-scans over 7.5 mm, a 2-D foveal
pit, known thickness) with scale_mm and the true fovea_mm.
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from octseg_jax.data import synthetic  # noqa: E402
from octseg_jax.data.scans import SPECTRALIS_ROW_UM  # noqa: E402
from octseg_jax.outputs.atomic import write_npz  # noqa: E402


def main(argv=None) -> None:
  """Phantom scans (with masks) in the shared .npz format, for trying predict/eval/explain
  without data."""
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--output", required=True)
  p.add_argument("--num_scans", type=int, default=4)
  p.add_argument("--height", type=int, default=496)
  p.add_argument("--width", type=int, default=512)
  p.add_argument("--seed", type=int, default=1)
  p.add_argument("--volume", action="store_true",
                 help="one eye's volume (--num_scans B-scans over 7.5 mm, a 2-D foveal pit, "
                 "known thickness) with scale_mm and the true fovea_mm")
  p.add_argument("--shape", choices=("flat", "curved"), default="curved",
                 help="--volume: Bruch's membrane flat or tilted and curved")
  a = p.parse_args(argv)
  if a.volume:
    # Rows as tall as the B-scan phantom's at this height (3.87 um at 496 rows), so a model
    # trained on phantom B-scans of the same height sees layers of the usual size.
    row_mm = SPECTRALIS_ROW_UM / 1000 * 496 / a.height
    vol, truth = synthetic.generate_volume(a.num_scans, a.height, a.width, a.seed,
                                 scale_mm=(0.125, row_mm, None), shape=a.shape)
    write_npz(a.output, images=vol.images, masks=vol.masks, scale_mm=np.array(vol.scale_mm),
              fovea_mm=truth["fovea_mm"])
    print(f"wrote a phantom volume of {a.num_scans} B-scans of {a.height}x{a.width}, scale "
          f"{tuple(round(s, 5) for s in vol.scale_mm)} mm, fovea at "
          f"({truth['fovea_mm'][0]:.2f}, {truth['fovea_mm'][1]:.2f}) mm to {a.output}")
    return
  s = synthetic.generate(a.num_scans, a.height, a.width, a.seed)
  write_npz(a.output, images=s.images, masks=s.masks, subject=s.subjects.astype(np.int8))
  print(f"wrote {a.num_scans} phantom scan{'' if a.num_scans == 1 else 's'} of "
        f"{a.height}x{a.width} to {a.output}")




if __name__ == "__main__":
  main()

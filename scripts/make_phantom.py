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
from octseg_jax.data.scans import MAX_IMAGE_SIDE, SPECTRALIS_ROW_UM  # noqa: E402
from octseg_jax.errors import InputError  # noqa: E402
from octseg_jax.outputs.atomic import check_output_file, write_npz  # noqa: E402


MIN_SIDE = 16      # rows and columns: fewer leave no room for the phantom's layers and cysts


def check_args(a) -> None:
  """Refuses (InputError naming the option) what would write no scan, a scan the readers
  refuse, or over an existing file (scans that earlier predictions were made from)."""
  if a.num_scans < 1:
    raise InputError(f"--num_scans={a.num_scans}: must be at least 1")
  for option, side in (("--height", a.height), ("--width", a.width)):
    if not MIN_SIDE <= side <= MAX_IMAGE_SIDE:
      raise InputError(f"{option}={side}: must be from {MIN_SIDE} to {MAX_IMAGE_SIDE} pixels")
  if a.seed < 0:
    raise InputError(f"--seed={a.seed}: must be at least 0")
  if os.path.isdir(a.output):
    raise InputError(f"--output={a.output}: is a folder; name the .npz file to write")
  if os.path.exists(a.output):
    raise InputError(f"--output={a.output}: exists; remove it or name another file")
  check_output_file(a.output)


def write(a) -> str:
  """Writes the phantom of the checked arguments; returns what was written, in words."""
  if a.volume:
    # Rows as tall as the B-scan phantom's at this height (3.87 um at 496 rows), so a model
    # trained on phantom B-scans of the same height sees layers of the usual size.
    row_mm = SPECTRALIS_ROW_UM / 1000 * 496 / a.height
    vol, truth = synthetic.generate_volume(a.num_scans, a.height, a.width, a.seed,
                                           scale_mm=(0.125, row_mm, None), shape=a.shape)
    write_npz(a.output, images=vol.images, masks=vol.masks, scale_mm=np.array(vol.scale_mm),
              fovea_mm=truth["fovea_mm"])
    return (f"a phantom volume of {a.num_scans} B-scans of {a.height}x{a.width}, scale "
            f"{tuple(round(s, 5) for s in vol.scale_mm)} mm, fovea at "
            f"({truth['fovea_mm'][0]:.2f}, {truth['fovea_mm'][1]:.2f}) mm")
  s = synthetic.generate(a.num_scans, a.height, a.width, a.seed)
  write_npz(a.output, images=s.images, masks=s.masks, subject=s.subjects.astype(np.int8))
  return f"{a.num_scans} phantom scan{'' if a.num_scans == 1 else 's'} of {a.height}x{a.width}"


def main(argv=None) -> int:
  """Phantom scans (with masks) in the shared .npz format, for trying predict/eval/explain
  without data; bad options get one line and exit status 2, and nothing is written."""
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--output", required=True, help="the .npz file to write (not an existing one)")
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
  try:
    check_args(a)
    print(f"wrote {write(a)} to {a.output}")
  except InputError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())

"""Scores an ensemble of training workdirs (averaged probabilities, optional flip averaging)
on their common validation split, with calibration and boundary uncertainty:

  python scripts/eval_ensemble.py --output=OUT WORKDIR [WORKDIR ...] [--no_flip]

Writes OUT/ensemble_metrics.json (octseg_jax/serving/ensemble.py evaluate_ensemble). Bad input: one
line and exit status 2.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from octseg_jax.runtime import xla_setup  # noqa: E402

xla_setup.apply_cpu_flags()

from octseg_jax.serving import ensemble  # noqa: E402
from octseg_jax.errors import InputError  # noqa: E402


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("workdirs", nargs="+")
  parser.add_argument("--output", required=True)
  parser.add_argument("--no_flip", action="store_true")
  parser.add_argument("--threshold_um", type=float, default=ensemble.DEFAULT_THRESHOLD_UM)
  args = parser.parse_args()
  try:
    r = ensemble.evaluate_ensemble(args.workdirs, args.output, not args.no_flip,
                                   args.threshold_um)
  except InputError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  u = r["uncertainty"]
  print(f"{len(args.workdirs)} members x {'2' if not args.no_flip else '1'} views: mean layer "
        f"Dice {r['raw']['literature']['mean_layer_dice']:.4f}, ECE "
        f"{r['calibration']['ece']:.4f}, flagged columns {u['flagged_columns']}/{u['columns']}, "
        f"rho(uncertainty, boundary error) {u['vs_boundary_error']['pooled']['rho']:.3f}; "
        f"wrote {args.output}/ensemble_metrics.json")


if __name__ == "__main__":
  main()

"""Writes the held-out evidence a shipped predictor's explanations are judged by:

  python scripts/cam_evidence.py --heldout=docs/results/cpu_2core/explain_heldout_shipped_6scans \
      --output=pretrained/cam_evidence.json

It reads scripts/compare_cams.py's results of fold models, each explaining B-scans of the
subjects it never trained on (--heldout, one compare_cams.json per fold folder: by default the
campaign base recipe's; explain_heldout_shipped_6scans holds pretrained/'s members', on 6 B-scans
per fold), and keeps
per method, layer and class whether the map beat random removal (ROAD most-relevant-first area
below the random-order area) pooled over the folds, in how many folds it did, and the
randomisation similarity. explain then says per class, in cam_stats.md, whether the map it drew
passed on that evidence (octseg_jax/outputs/cam_report.py). Bad input: one line, exit status 2.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from octseg_jax.errors import InputError  # noqa: E402
from octseg_jax.outputs.atomic import check_output_file, write_json  # noqa: E402
from octseg_jax.outputs.cam_report import heldout_evidence  # noqa: E402
from octseg_jax.serving.workdir import read_json  # noqa: E402
from scripts.campaign import run_of_workdir  # noqa: E402

HELDOUT = "docs/results/cpu_2core/explain_heldout"


def evidence_file(heldout: str) -> dict:
  """The evidence of the fold folders under `heldout` (fold*/compare_cams.json)."""
  if not os.path.isdir(heldout):
    raise InputError(f"{heldout}: not a folder")
  folds = sorted(d for d in os.listdir(heldout) if d.startswith("fold")
                 and os.path.exists(os.path.join(heldout, d, "compare_cams.json")))
  if not folds:
    raise InputError(f"{heldout}: no fold*/compare_cams.json")
  runs = {f: read_json(os.path.join(heldout, f, "compare_cams.json")) for f in folds}
  names = [run_of_workdir(r["workdir"]) for r in runs.values()]
  scans = "; ".join(f"{n}: " + ", ".join(s[0] for s in r["scans"])
                    for n, r in zip(names, runs.values()))
  return {"models": (f"{len(folds)} campaign fold models, each on B-scans of the subjects it "
                     f"never trained on ({scans})"),
          "source": [os.path.join(heldout, f, "compare_cams.json") for f in folds],
          "methods": heldout_evidence(runs)}


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--heldout", default=HELDOUT, help="folder of fold*/compare_cams.json")
  p.add_argument("--output", required=True, help="the JSON file to write (in a workdir)")
  a = p.parse_args(argv)
  try:
    check_output_file(a.output)
    evidence = evidence_file(a.heldout)
  except InputError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  except (KeyError, TypeError, IndexError) as e:
    print(f"error: {a.heldout}: a compare_cams.json is not scripts/compare_cams.py's result "
          f"({type(e).__name__}: {e})", file=sys.stderr)
    return 2
  write_json(a.output, evidence)
  print(f"{a.output}: evidence of {len(evidence['source'])} folds, "
        f"{sum(len(v) for v in evidence['methods'].values())} method x layer pairs")
  return 0


if __name__ == "__main__":
  sys.exit(main())

"""Makes an ensemble workdir from training workdirs and scores it with --mode=eval:

  python scripts/eval_ensemble.py --output=OUT WORKDIR [WORKDIR ...] [--no_flip]
  python scripts/eval_ensemble.py --package --output=NEW WORKDIR [WORKDIR ...] [--no_flip]

--package makes a self-contained ensemble workdir to ship (pretrained/) and does not score it
(fold models share no validation split): each member's best checkpoint and its config.json,
split.json, log.csv and provenance.json are copied into NEW/members/NAME (NAME: the member
folder's name), ensemble.json names them by relative path (and, as provenance, `sources`: the
folders they were copied from), and NEW, which must not exist, appears only when complete.
--no_eval builds an ensemble workdir without scoring it. `--config.FIELD=VALUE` (predict.*
fields other than predict.members, e.g. --config.predict.smooth_sd_columns=6, and explain.*
fields; checked by serving.inference.check_ensemble_settings) are stored as ensemble.json's
`settings`, which eval, predict and explain apply beneath their own --config overrides.

OUT becomes an ensemble workdir (OUT/ensemble.json: the members' absolute paths and whether
each also runs on the mirrored scan), which predict, explain and eval load like any workdir;
eval then scores it on the members' common validation split (the one inference path,
octseg_jax/serving/inference.py) and writes OUT/metrics.json, metrics.md and side_by_side.png,
with calibration and the rank correlation of the members' boundary spread with the boundary
error. Bad input: one line and exit status 2.
"""

import argparse
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from octseg_jax.runtime import xla_setup  # noqa: E402

xla_setup.apply_cpu_flags()

from octseg_jax.config import overrides  # noqa: E402
from octseg_jax.errors import InputError  # noqa: E402
from octseg_jax.modes import evaluate  # noqa: E402
from octseg_jax.outputs.folder_run import check_output_folder  # noqa: E402
from octseg_jax.outputs.atomic import write_json  # noqa: E402
from octseg_jax.layout import (BEST_DIR, CONFIG_FILE, LOG_FILE, PROVENANCE_FILE,  # noqa: E402
                               SPLIT_FILE)
from octseg_jax.serving.inference import (  # noqa: E402
    ENSEMBLE_FILE, check_ensemble_settings, ensemble_record, is_ensemble)


def make_ensemble(output: str, workdirs, flip: bool, settings=None) -> None:
  """OUT/ensemble.json for `workdirs` (refused if OUT already holds one: a new folder each time;
  a member that is itself an ensemble is refused)."""
  path = os.path.join(output, ENSEMBLE_FILE)
  if os.path.exists(path):
    raise InputError(f"--output={output}: already an ensemble workdir; choose a new folder")
  missing = [w for w in workdirs if not os.path.isdir(w)]
  if missing:
    raise InputError(f"{missing[0]}: not a folder (expected a training workdir)")
  nested = [w for w in workdirs if is_ensemble(w)]
  if nested:
    raise InputError(f"{nested[0]}: is itself an ensemble workdir; members are training "
                     "workdirs (list its members instead)")
  os.makedirs(output, exist_ok=True)
  write_json(path, ensemble_record([os.path.abspath(w) for w in workdirs], flip, settings))


MEMBER_FILES = (CONFIG_FILE, SPLIT_FILE, LOG_FILE, PROVENANCE_FILE)


def package(output: str, workdirs, flip: bool, settings=None) -> None:
  """A self-contained ensemble workdir at `output` (refused if it exists), built next to it
  and renamed into place when complete."""
  if os.path.exists(output):
    raise InputError(f"--output={output}: already exists; --package writes a new folder")
  names = [os.path.basename(os.path.normpath(w)) for w in workdirs]
  if len(set(names)) != len(names):
    raise InputError(f"member folder names repeat ({', '.join(names)}); give distinct names")
  for w in workdirs:
    if not os.path.isdir(os.path.join(w, BEST_DIR)):
      raise InputError(f"{w}: no best/ checkpoint folder (not a trained workdir)")
  partial = output.rstrip("/") + ".partial"
  if os.path.exists(partial):
    raise InputError(f"{partial}: left by an interrupted --package; remove it and rerun")
  for w, name in zip(workdirs, names):
    dst = os.path.join(partial, "members", name)
    shutil.copytree(os.path.join(w, BEST_DIR), os.path.join(dst, BEST_DIR))
    for f in MEMBER_FILES:
      if os.path.exists(os.path.join(w, f)):
        shutil.copy2(os.path.join(w, f), os.path.join(dst, f))
  write_json(os.path.join(partial, ENSEMBLE_FILE),
             ensemble_record([f"members/{n}" for n in names], flip, settings,
                             sources=[os.path.abspath(w) for w in workdirs]))
  os.rename(partial, output)


def ensemble_settings(args) -> dict:
  """`--config.FIELD=VALUE` args -> ensemble.json's settings, parsed as predict's overrides and
  checked by serving.inference.check_ensemble_settings (the reader's own rule)."""
  settings = overrides.parse(args, "predict")
  problem = check_ensemble_settings(settings)
  if problem:
    raise InputError(f"--config: {problem}")
  return settings


def missing_folders(path: str) -> list:
  """The folders of `path` that do not exist yet, outermost first (what makedirs will make)."""
  missing = []
  path = os.path.abspath(path)
  while not os.path.exists(path):
    missing.insert(0, path)
    path = os.path.dirname(path)
  return missing


def undo(made) -> None:
  """Removes the ensemble.json this command wrote and the folders it made (innermost first),
  when the command failed (a rerun with other members would be refused: 'already an ensemble
  workdir'). A folder that holds anything else is kept."""
  for path in reversed(made or []):
    if os.path.isfile(path):
      os.remove(path)
    elif os.path.isdir(path) and not os.listdir(path):
      os.rmdir(path)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("workdirs", nargs="+")
  parser.add_argument("--output", required=True)
  parser.add_argument("--no_flip", action="store_true")
  parser.add_argument("--package", action="store_true", help="copy the members into OUTPUT")
  parser.add_argument("--no_eval", action="store_true", help="only build the workdir")
  rest, settings_args = overrides.split_argv(sys.argv[1:])
  args = parser.parse_args(rest)
  made = []                                    # what this command made, undone on a failure
  try:
    settings = ensemble_settings(settings_args)
    if args.package:
      package(args.output, args.workdirs, not args.no_flip, settings)
    else:
      check_output_folder(args.output)
      made = missing_folders(args.output)
      make_ensemble(args.output, args.workdirs, not args.no_flip, settings)
      made.append(os.path.join(args.output, ENSEMBLE_FILE))
    if args.no_eval or args.package:
      print(f"{args.output}: ensemble workdir of {len(args.workdirs)} members")
      return
    r = evaluate.run(args.output, None, args.output)
  except BaseException as e:           # an InputError, another error or Ctrl-C: undo, then say
    undo(made)
    if not isinstance(e, InputError):
      raise
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  pooled = r["calibration"].get("uncertainty_vs_error", {}).get("pooled", {})
  rho = pooled.get("rho", float("nan"))
  why = "" if rho == rho else (f" ({pooled.get('pairs', 0)} (boundary, column) pairs with "
                               "both a spread and an error)")
  print(f"{len(args.workdirs)} members x {1 if args.no_flip else 2} views: ECE "
        f"{r['calibration']['ece']:.4f}, rho(boundary spread, boundary error) {rho:.3f}{why}")


if __name__ == "__main__":
  main()

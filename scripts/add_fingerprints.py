"""Adds train.fingerprints to the split.json of workdirs trained before they were recorded:

  python scripts/add_fingerprints.py WORKDIR [WORKDIR ...] [--duke_dir=DIR]

Training records, per training scan, pipeline.pixel_fingerprint of its pixels, so that
predict, eval and explain find a training scan read under another name (an exported PNG, a
user's .npz: inference.TrainingScans). For an older workdir this reads its configured data
again (--duke_dir: where the Duke files are now, if they moved), checks that every training
scan the split names is there, and rewrites split.json with the fingerprints added (atomic;
nothing else changes), holding each workdir's training lock meanwhile, so that a workdir being
trained is refused rather than raced. An ensemble workdir is done member by member: pass the
members. Bad input: one line and exit status 2.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from octseg_jax.config.checks import check_split_record  # noqa: E402
from octseg_jax.data import pipeline  # noqa: E402
from octseg_jax.errors import InputError, one_line  # noqa: E402
from octseg_jax.outputs.atomic import write_json  # noqa: E402
from octseg_jax.layout import SPLIT_FILE  # noqa: E402
from octseg_jax.serving.workdir import WorkdirLock, load_config, read_json  # noqa: E402


def fingerprinted_split(workdir: str, duke_dir: str = "") -> dict:
  """The workdir's split record with train.fingerprints from its configured data."""
  config = load_config(workdir)
  if duke_dir:
    config.data.duke_dir = duke_dir
  path = os.path.join(workdir, SPLIT_FILE)
  split = check_split_record(read_json(path), path)
  wanted = split.get("train", {}).get("names")
  if not wanted:
    raise InputError(f"{path}: no train.names to fingerprint")
  images, _, _, names = pipeline.flatten(pipeline.load_scans(config.data))
  by_name = dict(zip(names, images))
  missing = [n for n in wanted if n not in by_name]
  if missing:
    raise InputError(f"{path}: {len(missing)} training scans (first {missing[0]}) are not in "
                     f"the configured data ({config.data.source})"
                     + ("; give --duke_dir" if config.data.source == "duke" else ""))
  split["train"]["fingerprints"] = [pipeline.pixel_fingerprint(by_name[n]) for n in wanted]
  return split


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("workdirs", nargs="+")
  parser.add_argument("--duke_dir", default="")
  args = parser.parse_args(argv)
  locks = [WorkdirLock(w, "is adding fingerprints to its split.json")
           for w in dict.fromkeys(map(os.path.abspath, args.workdirs))]
  try:
    for lock in locks:                    # no training starts in them meanwhile
      lock.acquire()
    splits = [(w, fingerprinted_split(w, args.duke_dir)) for w in args.workdirs]
    for workdir, split in splits:         # all read before any is written; each atomically
      write_json(os.path.join(workdir, SPLIT_FILE), split)
      print(f"{workdir}: {len(split['train']['fingerprints'])} training scans fingerprinted")
  except (InputError, OSError) as e:
    print(f"error: {one_line(e)}", file=sys.stderr)
    return 2
  finally:
    for lock in locks:
      lock.release()
  return 0


if __name__ == "__main__":
  sys.exit(main())

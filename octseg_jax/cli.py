"""Dispatch of main.py's modes, and the one-line error contract.

An InputError (bad file, bad option, empty workdir, diverged training) prints
`error: <file or option>: <problem>` on stderr and exits with status 2. --debug shows the
traceback instead.
"""

import os
import sys

from absl import logging
import jax

from octseg_jax.errors import InputError

MODES = ("train", "eval", "predict", "explain", "benchmark")
CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "octseg_jax", "xla")


def enable_compilation_cache(path: str = CACHE_DIR) -> None:
  """Persistent XLA cache: a second run of the same config does not recompile."""
  try:
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  except (AttributeError, ValueError) as e:   # older/newer jax without these options
    logging.warning("no persistent compilation cache: %s", e)


def _needs(flag_value, name: str, mode: str):
  if not flag_value:
    raise InputError(f"--{name}: required for --mode={mode}")
  return flag_value


def dispatch(flags) -> None:
  mode = flags.mode
  if mode in ("train", "benchmark") and flags.config is None:
    raise InputError(f"--config: required for --mode={mode} (for example configs/cpu_demo.py)")
  if mode == "train":
    from octseg_jax import train
    workdir = _needs(flags.workdir, "workdir", mode)
    summary = train.train_and_evaluate(flags.config, workdir)
    if summary:
      print(f"best epoch {summary.get('epoch')}: val_loss {summary['loss']:.4f}, "
            f"mean layer Dice {summary['literature']['mean_layer_dice']:.4f}")
    return
  if mode == "benchmark":
    from octseg_jax import benchmark
    benchmark.run(flags.config, flags.output or flags.workdir or ".")
    return
  workdir = _needs(flags.workdir, "workdir", mode)
  if not os.path.isdir(workdir):
    raise InputError(f"{workdir}: no such workdir")
  output = flags.output or workdir
  if mode == "eval":
    from octseg_jax import evaluate
    evaluate.run(workdir, flags.input, output)
  elif mode == "predict":
    from octseg_jax import predict
    predict.run(workdir, _needs(flags.input, "input", mode), _needs(flags.output, "output", mode))
  elif mode == "explain":
    from octseg_jax import explain
    box = None
    if flags.cam_box:
      try:
        box = [int(v) for v in flags.cam_box]
      except ValueError:
        raise InputError(f"--cam_box={','.join(flags.cam_box)}: expected four integers") from None
      if len(box) != 4:
        raise InputError(f"--cam_box: expected row0,col0,row1,col1, got {len(box)} values")
    explain.run(workdir, _needs(flags.input, "input", mode), output, flags.cam_layers,
                flags.cam_method, flags.cam_target, box,
                getattr(flags, "cam_faithfulness", "none"), getattr(flags, "cam_sanity", False))


def run(flags) -> int:
  enable_compilation_cache()
  if not flags.debug:
    logging.set_verbosity(logging.WARNING)   # orbax logs every save at INFO
  if flags.debug:
    dispatch(flags)
    return 0
  try:
    dispatch(flags)
  except InputError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print("error: interrupted", file=sys.stderr)
    return 130
  return 0

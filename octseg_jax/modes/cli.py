"""Dispatch of main.py's modes, and the one-line error contract.

An InputError (bad file, bad option, empty workdir, diverged training) prints
`error: <file or option>: <problem>` on stderr and exits with status 2. --debug shows the
traceback instead.
"""

import os
import sys
import threading

from absl import logging
import jax

from octseg_jax.config import checks as config_checks
from octseg_jax.config.overrides import ALIASES, INFERENCE_MODES as INFERENCE
from octseg_jax.outputs import folder_run
from octseg_jax.outputs.plots import DEFAULT_FIGURES
from octseg_jax.errors import InputError, disk_full, one_line

MODES = ("train", "eval", "predict", "explain", "benchmark")
BENCHMARK_DIR = os.path.join("runs", "benchmark")   # default --output; ignored by git
CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "octseg_jax", "xla")


def enable_compilation_cache(path: str = "") -> None:
  """Persistent XLA cache: a second run of the same config does not recompile. The folder is
  `path`, else jax's own JAX_COMPILATION_CACHE_DIR, else CACHE_DIR; compiles under a second
  are not stored unless JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS says otherwise."""
  try:
    jax.config.update("jax_compilation_cache_dir",
                      path or os.environ.get("JAX_COMPILATION_CACHE_DIR") or CACHE_DIR)
    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
      jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  except (AttributeError, ValueError) as e:   # older/newer jax without these options
    logging.warning("no persistent compilation cache: %s", e)


def _needs(flag_value, name: str, mode: str):
  if not flag_value:
    raise InputError(f"--{name}: required for --mode={mode}")
  return flag_value


def _output_folder(flags, mode: str, workdir: str) -> str:
  """--output, checked; eval, predict and explain default to a new folder runs/MODE_WORKDIR
  under the current directory (never the workdir, which holds the model)."""
  output = flags.output
  if not output:
    output = folder_run.new_folder_here(mode, workdir)
    print(f"no --output given: writing to {output}")
  folder_run.check_output_folder(output)
  folder_run.refuse_workdir(output, workdir)
  return output


def start_processes(flags) -> None:
  """jax.distributed set-up from the flags (before any JAX computation); only training and the
  benchmark run on several processes."""
  from octseg_jax.runtime import distributed
  distributed.initialize(flags.distributed, flags.coordinator_address, flags.num_processes,
                         flags.process_id, flags.distributed_timeout_s)
  if distributed.process_count() > 1 and flags.mode not in ("train", "benchmark"):
    raise InputError(f"--mode={flags.mode}: runs on one process; only train and benchmark "
                     "run on several")


def dispatch(flags, override_args=()) -> None:
  """Runs flags.mode. override_args: the `--config.FIELD=VALUE` args of eval/predict/explain."""
  mode = flags.mode
  _refuse_mode_flags(flags)
  if hasattr(flags, "distributed"):
    start_processes(flags)
  if mode in ("train", "benchmark"):
    if flags.config is None:
      raise InputError(f"--config: required for --mode={mode} (for example configs/cpu_demo.py)")
    config_checks.validate(flags.config, check_files=(mode == "train"))
  if mode == "train":
    from octseg_jax.training import train
    workdir = _needs(flags.workdir, "workdir", mode)
    if os.path.exists(workdir) and not os.path.isdir(workdir):
      raise InputError(f"--workdir={workdir}: is a file, expected a folder")
    summary = train.train_and_evaluate(flags.config, workdir)
    if summary:
      print(f"best epoch {summary.get('epoch')}: val_loss {summary['loss']:.4f}, "
            f"mean layer Dice {summary['literature']['mean_layer_dice']:.4f} (validation "
            f"split, model input); {os.path.abspath(workdir)} holds log.csv, "
            "training_curves.png and the checkpoints")
    return
  if mode == "benchmark":
    from octseg_jax.modes import benchmark
    output = flags.output or flags.workdir or BENCHMARK_DIR
    folder_run.check_output_folder(output)
    benchmark.run(flags.config, output)
    return
  workdir = _needs(flags.workdir, "workdir", mode)
  if not os.path.isdir(workdir):
    raise InputError(f"--workdir={workdir}: " + ("is a file, not a workdir (a folder)"
                                                  if os.path.exists(workdir) else
                                                  "no such workdir"))
  overrides = _inference_overrides(flags, workdir, override_args)
  if mode in ("predict", "explain"):         # before the output folder is announced
    _needs(flags.input, "input", mode)
  output = _output_folder(flags, mode, workdir)
  if mode == "eval":
    from octseg_jax.modes import evaluate
    evaluate.run(workdir, flags.input, output, overrides=overrides,
                 pixel_um=mode_flag(flags, "pixel_um"))
  elif mode == "predict":
    from octseg_jax.modes import predict
    predict.run(workdir, flags.input, output,
                figures=mode_flag(flags, "figures"), volume=mode_flag(flags, "volume"),
                laterality=mode_flag(flags, "laterality"), fovea=mode_flag(flags, "fovea"),
                overrides=overrides, pixel_um=mode_flag(flags, "pixel_um"))
  elif mode == "explain":
    from octseg_jax.modes import explain
    explain.run(workdir, flags.input, output,
                faithfulness_flag=mode_flag(flags, "cam_faithfulness"),
                sanity=mode_flag(flags, "cam_sanity"), overrides=overrides,
                pixel_um=mode_flag(flags, "pixel_um"))


# the flags of some modes only: their defaults and the modes that use them
MODE_FLAGS = {"volume": (False, ("predict",)), "laterality": (None, ("predict",)),
              "fovea": (None, ("predict",)), "pixel_um": (None, INFERENCE),
              "figures": (DEFAULT_FIGURES, ("predict",)), "input": (None, INFERENCE),
              "output": (None, INFERENCE + ("benchmark",)),
              "cam_faithfulness": ("none", ("explain",)), "cam_sanity": (False, ("explain",)),
              **{alias: (None, ("explain",)) for alias in ALIASES}}


def mode_default(name: str):
  """The default of a flag of MODE_FLAGS (main.py declares the flags with it)."""
  return MODE_FLAGS[name][0]


def mode_flag(flags, name: str):
  """A flag of MODE_FLAGS as given, or its default where `flags` lacks it."""
  return getattr(flags, name, mode_default(name))


def _refuse_mode_flags(flags) -> None:
  """Every mode refuses the flags of MODE_FLAGS it does not use rather than ignore them (a
  --input given to training, a --pixel_um read as the scale of numbers it did not change)."""
  for name, (default, modes) in MODE_FLAGS.items():
    if flags.mode not in modes and mode_flag(flags, name) != default:
      raise InputError(f"--{name}: only used by " + " and ".join(f"--mode={m}" for m in modes))


def _inference_overrides(flags, workdir: str, override_args) -> dict:
  """Checked --config.FIELD=VALUE settings of eval/predict/explain (and the --cam_* aliases)."""
  from octseg_jax.config import overrides as inference_overrides
  from octseg_jax.serving.inference import ENSEMBLE_FILE, is_ensemble
  if flags.config is not None:
    stored = (f"{workdir}/{ENSEMBLE_FILE} (its members' config.json)" if is_ensemble(workdir)
              else f"{workdir}/config.json")
    raise InputError(f"--config: --mode={flags.mode} uses {stored}; change inference settings "
                     "with --config.FIELD=VALUE instead, for example --config.explain.max_scans=1")
  overrides = inference_overrides.parse(override_args or [], flags.mode)
  if flags.mode != "explain":                      # the --cam_* aliases: _refuse_mode_flags
    return overrides
  return inference_overrides.merge_aliases(
      overrides, {f: getattr(flags, f) for f in inference_overrides.ALIASES})


def _os_error_line(e: OSError, flags=None) -> str:
  """`path: reason` for an OSError (no space, read-only, a file where a folder should be). A
  full disk during training without a file name (a log or event-file write) names the workdir."""
  training = flags is not None and flags.mode == "train" and flags.workdir
  if e.filename is None and training and disk_full(e):
    return (f"{flags.workdir}: no space left on device while training; the earlier checkpoints "
            "are intact: free space and rerun the same command to resume")
  where = e.filename if e.filename is not None else "output"
  return f"{where}: {e.strerror or e}"


def exit_now(status: int, message: str = "") -> None:
  if message:
    print(message, file=sys.stderr)
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(status)   # no interpreter shutdown: background (orbax) threads cannot print or hang


def _in_gc_callback(frame, depth: int = 8) -> bool:
  """Whether `frame` (or one of its callers) is a garbage-collector callback or a finaliser,
  where Python ignores exceptions."""
  while frame is not None and depth > 0:
    if "gc_callback" in frame.f_code.co_name or frame.f_code.co_name == "__del__":
      return True
    frame, depth = frame.f_back, depth - 1
  return False


def handle_interrupts(grace_s: float = 20.0) -> None:
  """Ctrl-C raises KeyboardInterrupt as usual (so atomic writes clean up and run() prints one
  line), and the process ends with status 130 at the latest `grace_s` later, or at once on a
  second Ctrl-C: an interrupt inside a pending checkpoint save must not hang the process.
  Every output is written atomically, so ending without cleanup leaves no half-written file
  (an unfinished checkpoint is ignored and redone on resume)."""
  import _thread
  import signal
  state = {"interrupted": False}

  def on_interrupt(signum, frame):
    del signum
    if state["interrupted"]:
      exit_now(130, "error: interrupted")
    if _in_gc_callback(frame):
      # Python ignores (and prints) exceptions raised inside garbage-collector callbacks such
      # as jax's: deliver the interrupt again a moment later, outside the callback.
      retry = threading.Timer(0.05, _thread.interrupt_main)
      retry.daemon = True
      retry.start()
      return
    state["interrupted"] = True
    timer = threading.Timer(grace_s, exit_now, (130, "error: interrupted"))
    timer.daemon = True
    timer.start()
    raise KeyboardInterrupt

  signal.signal(signal.SIGINT, on_interrupt)


class DiskFullNoise:
  """A logging filter that drops records about a full disk (orbax's background save threads,
  asyncio's unretrieved futures): the run reports it itself, in one line."""

  def filter(self, record) -> bool:
    text = record.getMessage()
    if record.exc_info and record.exc_info[1] is not None:
      text += str(record.exc_info[1])
    return not disk_full(text)


def after_failed_save(value) -> bool:
  """Errors of library threads after a checkpoint save failed (tensorstore's callbacks reach
  orbax's event loop after it closed): a full disk and the closed loop."""
  return disk_full(value) or (isinstance(value, RuntimeError)
                              and str(value) == "Event loop is closed")


def quiet_excepthook(kind, value, tb) -> None:
  if not after_failed_save(value):
    sys.__excepthook__(kind, value, tb)


def quiet_thread_excepthook(args) -> None:
  """threading.excepthook: a library's writer thread (tensorboardX) on a full disk."""
  if not after_failed_save(args.exc_value):
    threading.__excepthook__(args)


def quiet_unraisablehook(unraisable) -> None:
  """sys.unraisablehook, through which C++ callbacks report their Python errors."""
  if not after_failed_save(unraisable.exc_value):
    sys.__unraisablehook__(unraisable)


def quiet_libraries() -> None:
  """orbax logs every save at INFO, and a full disk as tracebacks from its threads."""
  import logging as std_logging
  logging.set_verbosity(logging.WARNING)
  for handler in std_logging.getLogger().handlers:
    if not any(isinstance(f, DiskFullNoise) for f in handler.filters):
      handler.addFilter(DiskFullNoise())
  sys.excepthook, sys.unraisablehook = quiet_excepthook, quiet_unraisablehook
  threading.excepthook = quiet_thread_excepthook


def run(flags, override_args=()) -> int:
  enable_compilation_cache()
  if not flags.debug:
    quiet_libraries()
  if flags.debug:
    dispatch(flags, override_args)
    return 0
  earlier = folder_run.unfinished_runs()         # only this command's runs are ended here
  try:
    dispatch(flags, override_args)
  except InputError as e:
    folder_run.end_unfinished(refused=True, keep=earlier)   # no half-written output stays
    print(f"error: {one_line(e)}", file=sys.stderr)
    return 2
  except OSError as e:
    folder_run.end_unfinished(refused=True, keep=earlier)
    print(f"error: {one_line(_os_error_line(e, flags))}", file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print("error: interrupted", file=sys.stderr)
    return 130
  finally:
    folder_run.end_unfinished(keep=earlier)    # an interrupted run keeps its records
  return 0

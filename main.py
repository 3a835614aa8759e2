"""octseg_jax command line: train (default), eval, predict, explain, benchmark.

  python main.py --config=configs/cpu_demo.py --workdir=runs/demo
  python main.py --mode=eval --workdir=runs/demo
  python main.py --mode=predict --workdir=runs/demo --input=scan.npz --output=out/
"""

import os
import re
import sys

from octseg_jax.runtime import xla_setup
xla_setup.apply_cpu_flags()   # before JAX initialises a backend

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from octseg_jax.cam import faithfulness  # noqa: E402
from octseg_jax.config import overrides as inference_overrides  # noqa: E402
from octseg_jax.config import schema  # noqa: E402
from octseg_jax.modes import cli  # noqa: E402
from octseg_jax.data import volumes  # noqa: E402
from octseg_jax.outputs.plots import FIGURES  # noqa: E402
from octseg_jax.runtime import distributed  # noqa: E402


def _fail(message: str):
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


def _unreadable_flagfile(argv):
  """The one-line problem of the first --flagfile that cannot be read, or None: ml_collections
  reads flag files while --config is defined, before absl could say so in one line."""
  for i, arg in enumerate(argv[1:], 1):
    name, eq, path = arg.lstrip("-").partition("=")
    if name != "flagfile" or not arg.startswith("-"):
      continue
    if not eq:
      if i + 1 == len(argv):
        return f"{arg}: missing value"
      path = argv[i + 1]
    try:
      open(path).close()
    except OSError as e:
      return f"--flagfile={path}: cannot be read ({e.strerror or e})"
  return None


if __name__ == "__main__":
  _FLAGFILE_PROBLEM = _unreadable_flagfile(sys.argv)
  if _FLAGFILE_PROBLEM:
    _fail(_FLAGFILE_PROBLEM)

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", None, "Training configuration file (configs/*.py). Any field is set with "
    "--config.FIELD=VALUE, in training and, for inference settings, in predict, eval and "
    "explain (the fields and their meaning: octseg_jax/config/schema.py). Bad input exits 2, "
    "Ctrl-C 130.", lock_config=True)
flags.DEFINE_string("workdir", None, "Run folder: checkpoints, logs, reports.")
flags.DEFINE_enum("mode", "train", cli.MODES, "What to do.")
flags.DEFINE_string("input", None, "eval/predict/explain: a .npz, .mat, image (PNG, TIFF), "
                    "scanner file (.vol, .e2e, .eye, HEYEX XML folder) or folder.")
flags.DEFINE_string("output", None, "eval/predict/explain: output folder (default: a new "
                    "folder runs/MODE_WORKDIR here).")
flags.DEFINE_list("cam_layers", None, "explain: layer names (default: the workdir config's, "
                  "or an ensemble's settings).")
flags.DEFINE_enum("cam_method", None, list(schema.choices("explain.method")),
                  "explain: method (default: the workdir config's, or an ensemble's settings).")
flags.DEFINE_enum("cam_target", None, list(schema.choices("explain.target")),
                  "explain: pixel set M.")
flags.DEFINE_list("cam_box", None, "explain: row0,col0,row1,col1 in scan pixels (target box).")
flags.DEFINE_bool("volume", cli.mode_default("volume"),
                  "predict: read an .npz input as one eye's volume.")
flags.DEFINE_enum("laterality", None, list(volumes.LATERALITIES),
                  "predict: eye of a volume without one.")
flags.DEFINE_string("fovea", None, "predict: x_mm,y_mm of the fovea in the maps' mm (x along "
                    "the B-scan from its first column, y the B-scan positions; default: found).")
flags.DEFINE_string("pixel_um", None, "predict, explain, eval: ROW[,COL] um per pixel row (and "
                    "column) of inputs without their own scale (images, .npz without scale_mm); "
                    "converts units only (explain: its scale bars; eval: its um errors). "
                    "Default: the model config's data.pixel_um per row.")
flags.DEFINE_enum("figures", cli.mode_default("figures"), list(FIGURES),
                  "predict: overlay and thickness figures for no scan, the first scan of each "
                  "file, a volume's B-scan nearest its fovea (the first scan of other files), "
                  "or every scan (a volume's thickness maps are always drawn).")
flags.DEFINE_enum("cam_faithfulness", cli.mode_default("cam_faithfulness"),
                  list(faithfulness.KINDS),
                  "explain: removal curves (deletion, ROAD, or both) per scan and layer.")
flags.DEFINE_bool("cam_sanity", cli.mode_default("cam_sanity"),
                  "explain: weight-randomisation check (first scan).")
flags.DEFINE_bool("debug", False, "Show full tracebacks instead of one-line errors.")
# Several processes (octseg_jax/runtime/distributed.py; README "Several machines").
flags.DEFINE_enum("distributed", distributed.DISTRIBUTED_MODES[0],
                  list(distributed.DISTRIBUTED_MODES),
                  "auto: jax.distributed.initialize() detects the cluster (Slurm, Open MPI).")
flags.DEFINE_string("coordinator_address", None, "HOST:PORT of process 0 (with the next two).")
flags.DEFINE_integer("num_processes", None, "Number of processes of the run.")
flags.DEFINE_integer("process_id", None, "This process's index, 0 .. num_processes-1.")
flags.DEFINE_integer("distributed_timeout_s", distributed.DEFAULT_TIMEOUT_S,
                     "Seconds to wait for the coordinator and the other processes.")


HELP_FLAGS = {"--help", "-h", "-?", "--helpshort", "--helpfull", "--helpxml"}


def _config_file_problem(argv):
  """One line naming --config's file and why it cannot be loaded, or None."""
  for i, arg in enumerate(argv):
    if arg == "--config" and i + 1 < len(argv):
      path = argv[i + 1]
    elif arg.startswith("--config="):
      path = arg[len("--config="):]
    else:
      continue
    path = path.split(":")[0]          # config_flags allows FILE:ARGUMENT
    if os.path.isdir(path):
      return f"--config={path}: is a folder; give a config file such as configs/tiny.py"
    if not os.path.isfile(path):
      return f"--config={path}: no such file"
    try:
      with open(path, "rb") as f:
        compile(f.read(), path, "exec")
    except (OSError, SyntaxError, ValueError) as e:
      return f"--config={path}: not a readable Python config file ({type(e).__name__}: {e})"
  return None


def _unknown_field(argv):
  """The one-line problem of the first `--config.FIELD` override that names no field of the
  schema (with the closest field), or None."""
  for arg in argv[1:]:
    if arg.startswith("--config."):
      name = arg[len("--config."):].split("=", 1)[0]
      if name not in schema.FIELDS:
        return schema.no_such_field(name)
  return None


def _badly_typed_override(argv, absl_error: str):
  """The one-line problem of the `--config.FIELD=VALUE` that absl's error names, in the
  schema parser's words (as eval/predict/explain word it), or None: absl's own words name
  Python internals ("invalid literal for int() with base 10")."""
  for arg in inference_overrides.split_argv(argv[1:])[1]:
    field, _, value = arg[len("--config."):].partition("=")
    if field in schema.FIELDS and f"--config.{field}=" in absl_error:
      try:
        schema.FIELDS[field].parse(value)
      except ValueError as e:
        return f"--config.{field}={value}: {e}"
  return None


# absl's words for a value its parser refuses (after "flag --NAME=VALUE: "), and ours; None: the
# valid values, from absl's list.
_ABSL_DETAILS = {r"value should be one of <(?P<allowed>.*)>": None,
                 r"invalid literal for int\(\).*": "expected a whole number",
                 r"\('Non-boolean argument to boolean flag'.*": "expected true or false"}


def _absl_problem(e: Exception) -> str:
  """absl's flag error in the one-line form of every other bad option, `--NAME[=VALUE]: problem`,
  in our words where absl's name Python internals ("invalid literal for int() with base 10");
  a message of another shape is kept as absl words it."""
  text = " ".join(str(e).split())
  if isinstance(e, flags.UnrecognizedFlagError):
    close = text.partition("Did you mean: ")[2].rstrip(" ?").split(", ")[0]
    return f"--{e.flagname}: no such option" + (f"; did you mean --{close}?" if close else "")
  for shape, words in ((r"Missing value for flag (-\S+)", "missing value"),
                       (r"(-\S+) does not take an argument", "takes no value")):
    m = re.fullmatch(shape, text)
    if m:
      return f"{m[1]}: {words}"
  for detail, words in _ABSL_DETAILS.items():
    m = re.fullmatch(rf"flag (--[^=\s]+=.*): {detail}", text)
    if m:
      return f"{m[1]}: " + (words or "valid values are " + ", ".join(m["allowed"].split("|")))
  return text[len("flag "):] if text.startswith("flag --") else text


def _raised_by_absl(e: Exception) -> bool:
  """Whether `e` was raised inside absl's flag parser (not by a config override)."""
  tb, where = e.__traceback__, ""
  while tb is not None:
    where, tb = tb.tb_frame.f_code.co_filename, tb.tb_next
  return os.path.join("absl", "flags") in where


def parse_flags(argv):
  """absl flag parsing with config-file and config-override errors (a missing or broken file,
  a field that does not exist, a value of the wrong type) reported in one line instead of a
  traceback. In eval/predict/explain the `--config.FIELD=VALUE` args are set aside (returned
  after the positional args) and checked against the workdir's config later
  (octseg_jax/config/overrides.py)."""
  debug = "--debug" in argv
  problem = None if debug else _config_file_problem(argv)
  if problem:
    _fail(problem)
  inference_args = []
  if inference_overrides.mode_of(argv[1:]) in inference_overrides.INFERENCE_MODES:
    argv, inference_args = inference_overrides.split_argv(argv)
  problem = None if debug else _unknown_field(argv)
  if problem:
    _fail(problem)
  try:
    return FLAGS(argv) + inference_args
  except SystemExit as e:
    # absl's --help / --helpfull print the usage and exit with status 1; asking for help is
    # not an error.
    if e.code == 1 and HELP_FLAGS & set(argv[1:]):
      sys.exit(0)
    raise
  except flags.Error as e:
    if debug:
      raise
    _fail(_badly_typed_override(argv, str(e)) or _absl_problem(e))
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    if debug:
      raise
    if _raised_by_absl(e):               # such as --noFLAG=VALUE: absl's plain ValueError
      _fail(_absl_problem(e))
    # ml_collections puts a repr in the message: undo its escaped quotes and newlines.
    text = str(e.args[0] if e.args else e).replace("\\'", "'").replace("\\n", " ")
    if len(text) > 1 and text[0] == text[-1] == "'":
      text = text[1:-1]
    text = " ".join(text.split()).replace(" Did you mean", ". Did you mean")
    _fail(f"config override: no field {text}" + ("" if text.endswith(("?", ".")) else "."))
  except Exception as e:  # an error inside the config file's get_config()
    if debug:
      raise
    _fail(f"--config: get_config() failed ({type(e).__name__}: {' '.join(str(e).split())[:200]})")


def _inference_args(argv):
  return [a for a in argv[1:] if a.startswith(inference_overrides.PREFIX)]


def main(argv):
  cli.handle_interrupts()
  status = cli.run(FLAGS, _inference_args(argv))
  if status != 0:
    # Skip interpreter shutdown after an error or an interrupt: pending checkpoint threads and
    # futures (orbax) would print after the one-line message, or hang.
    cli.exit_now(status)
  return status


def run_command(argv) -> int:
  """In-process entry point: parses `argv` (argv[0] is the program name) as the command line
  does and runs it; returns the exit status (0, 2 bad input or option, 130 interrupted)."""
  FLAGS.unparse_flags()
  for name in [n for n in FLAGS if n.startswith("config.")]:
    delattr(FLAGS, name)          # override flags of an earlier parse write to its config
  saved, sys.argv = sys.argv, list(argv)     # config_flags reads its overrides from sys.argv
  try:
    rest = parse_flags(list(argv))
  except SystemExit as e:
    return int(e.code) if e.code is not None else 0
  finally:
    sys.argv = saved
  return cli.run(FLAGS, _inference_args(rest))


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)

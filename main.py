"""octseg_jax command line: train (default), eval, predict, explain, benchmark.

  python main.py --config=configs/cpu_demo.py --workdir=runs/demo
  python main.py --mode=eval --workdir=runs/demo
  python main.py --mode=predict --workdir=runs/demo --input=scan.npz --output=out/
"""

import sys

from octseg_jax import xla_setup

xla_setup.apply_cpu_flags()   # before JAX initialises a backend

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from octseg_jax import cli, inference_overrides  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Training configuration file.",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Run folder: checkpoints, logs, reports.")
flags.DEFINE_enum("mode", "train", cli.MODES, "What to do.")
flags.DEFINE_string("input", None, "eval/predict/explain: a .npz, .mat, image, or folder.")
flags.DEFINE_string("output", None, "eval/predict/explain: output folder (default: workdir).")
flags.DEFINE_list("cam_layers", None, "explain: layer names (default: the workdir config's).")
flags.DEFINE_enum("cam_method", None, ["gradcam", "hirescam", "gradcampp"], "explain: method.")
flags.DEFINE_enum("cam_target", None, ["all", "predicted", "box"], "explain: pixel set M.")
flags.DEFINE_list("cam_box", None, "explain: row0,col0,row1,col1 in scan pixels (target box).")
flags.DEFINE_bool("volume", False, "predict: read an .npz input as one eye's volume.")
flags.DEFINE_enum("laterality", None, ["OD", "OS"], "predict: eye of a volume without one.")
flags.DEFINE_string("fovea", None, "predict: x_mm,y_mm of the fovea (default: found).")
flags.DEFINE_bool("debug", False, "Show full tracebacks instead of one-line errors.")


def _fail(message: str):
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


def parse_flags(argv):
  """absl flag parsing with config-override errors (a field that does not exist, a value of
  the wrong type) reported in one line instead of a traceback. In eval/predict/explain the
  `--config.FIELD=VALUE` args are set aside (returned after the positional args) and checked
  against the workdir's config later (octseg_jax/inference_overrides.py)."""
  inference_args = []
  if inference_overrides.mode_of(argv[1:]) in inference_overrides.INFERENCE_MODES:
    argv, inference_args = inference_overrides.split_argv(argv)
  try:
    return FLAGS(argv) + inference_args
  except flags.Error as e:
    _fail(str(e))
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    if "--debug" in argv:
      raise
    # ml_collections puts a repr in the message: undo its escaped quotes and newlines.
    text = str(e.args[0] if e.args else e).replace("\\'", "'").replace("\\n", " ")
    if len(text) > 1 and text[0] == text[-1] == "'":
      text = text[1:-1]
    text = " ".join(text.split()).replace(" Did you mean", ". Did you mean")
    _fail(f"config override: no field {text}" + ("" if text.endswith(("?", ".")) else "."))


def main(argv):
  return cli.run(FLAGS, [a for a in argv[1:] if a.startswith(inference_overrides.PREFIX)])


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)

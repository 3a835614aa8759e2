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

from octseg_jax import cli  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Training configuration file.",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Run folder: checkpoints, logs, reports.")
flags.DEFINE_enum("mode", "train", cli.MODES, "What to do.")
flags.DEFINE_string("input", None, "eval/predict/explain: a .npz, .mat, image, or folder.")
flags.DEFINE_string("output", None, "eval/predict/explain: output folder (default: workdir).")
flags.DEFINE_list("cam_layers", None, "explain: layer names (default: the workdir config's).")
flags.DEFINE_enum("cam_method", None, ["gradcam", "hirescam", "gradcampp", "ablation"],
                  "explain: method.")
flags.DEFINE_enum("cam_target", None, ["all", "predicted", "box"], "explain: pixel set M.")
flags.DEFINE_list("cam_box", None, "explain: row0,col0,row1,col1 in scan pixels (target box).")
flags.DEFINE_enum("cam_faithfulness", "none", ["none", "deletion", "road", "all"],
                  "explain: removal curves (deletion, ROAD, or both) per scan and layer.")
flags.DEFINE_bool("cam_sanity", False, "explain: weight-randomisation check (first scan).")
flags.DEFINE_bool("debug", False, "Show full tracebacks instead of one-line errors.")


def _fail(message: str):
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


def parse_flags(argv):
  """absl flag parsing with config-override errors (a field that does not exist, a value of
  the wrong type) reported in one line instead of a traceback."""
  try:
    return FLAGS(argv)
  except flags.Error as e:
    _fail(str(e))
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    if "--debug" in argv:
      raise
    # ml_collections puts a repr in the message: undo its escaped quotes and newlines.
    text = str(e.args[0] if e.args else e).replace("\\'", "'").replace("\\n", " ")
    if len(text) > 1 and text[0] == text[-1] == "'":
      text = text[1:-1]
    _fail("config override: no field " + " ".join(text.split()))


def main(argv):
  del argv
  return cli.run(FLAGS)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)

"""Checks of every config value before anything is written, and workdir configs with defaults.

`validate(config)` raises an InputError naming the first bad field (`--config.a.b=value:
problem`); the command line and train_and_evaluate call it before a workdir is created or
touched, and workdir.load_config on stored configs (whose missing fields take their defaults).
`check_split_record` / `check_split_names` check a workdir's split.json.
"""

import math
import os
from typing import Any, Callable, Dict, Optional

from octseg_jax.data.pipeline import SOURCES, SPLITS
from octseg_jax.data.scans import NUM_CLASSES
from octseg_jax.errors import InputError
from octseg_jax.cam.gradcam import METHODS as CAM_METHODS, TARGETS as CAM_TARGETS
from octseg_jax.learning.losses import DICE_MODES, LOSSES
from octseg_jax.models import MODELS
from octseg_jax.models.segnet import UPSAMPLING
from octseg_jax.learning.optim import OPTIMIZERS, SCHEDULES
from octseg_jax.data.preprocessing import NORMALISATIONS

COMPUTE_DTYPES = ("float32", "bfloat16")


def _is_int(v) -> bool:
  return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _int_at_least(low: int) -> Callable[[Any], Optional[str]]:
  return lambda v: None if _is_int(v) and v >= low else f"expected an integer >= {low}"


def _number_in(low: float, high: float, open_low: bool = False) -> Callable[[Any], Optional[str]]:
  def check(v):
    if _is_number(v) and (v > low if open_low else v >= low) and v <= high:
      return None
    return f"expected a number in {'(' if open_low else '['}{low:g}, {high:g}]"
  return check


def _one_of(names) -> Callable[[Any], Optional[str]]:
  return lambda v: None if v in names else f"valid values are {', '.join(names)}"


def _flag(v) -> Optional[str]:
  return None if isinstance(v, bool) else "expected True or False"


def _int_tuple(min_len: int, max_len: int, low: int) -> Callable[[Any], Optional[str]]:
  def check(v):
    if isinstance(v, (list, tuple)) and min_len <= len(v) <= max_len and \
       all(_is_int(x) and x >= low for x in v):
      return None
    sizes = f"{min_len}" if min_len == max_len else f"{min_len} to {max_len}"
    return f"expected {sizes} integers >= {low}"
  return check


def _resize_to(v) -> Optional[str]:
  if isinstance(v, (list, tuple)) and len(v) == 0:
    return None
  return _int_tuple(2, 2, 8)(v) and "expected () or (rows, columns), integers >= 8"


def _box(v) -> Optional[str]:
  if isinstance(v, (list, tuple)) and len(v) == 0:
    return None
  if _int_tuple(4, 4, 0)(v) is None and v[2] > v[0] and v[3] > v[1]:
    return None
  return "expected () or (row0, col0, row1, col1) with row1 > row0 and col1 > col0"


def _names(v) -> Optional[str]:
  if isinstance(v, (list, tuple)) and v and all(isinstance(x, str) and x for x in v):
    return None
  return "expected one or more layer names"


# Field -> check returning None (fine) or the problem. Fields not listed are not checked here.
CHECKS: Dict[str, Callable[[Any], Optional[str]]] = {
    "seed": _int_at_least(0),
    "data.source": _one_of(SOURCES),
    "data.subjects": _int_tuple(0, 10_000, 0),
    "data.grader": _one_of((1, 2)),
    "data.synthetic.num_scans": _int_at_least(2),
    "data.synthetic.height": _int_at_least(32),
    "data.synthetic.width": _int_at_least(32),
    "data.synthetic.scans_per_subject": _int_at_least(1),
    "data.synthetic.seed": _int_at_least(0),
    "data.synthetic.cysts": _flag,
    "data.recipe.band_height": _int_at_least(0),
    "data.recipe.resize_to": _resize_to,
    "data.recipe.normalisation": _one_of(NORMALISATIONS),
    "data.split": _one_of(SPLITS),
    "data.val_subjects": _int_tuple(0, 10_000, 0),
    "data.num_folds": _int_at_least(2),
    "data.fold": _int_at_least(0),
    "data.val_fraction": _number_in(0.0, 1.0, open_low=True),
    "data.augment.flip": _flag,
    "data.augment.max_shift": _int_at_least(0),
    "data.augment.intensity": _flag,
    "data.pixel_um": _number_in(0.0, 1e6, open_low=True),
    "data.max_image_side": _int_at_least(8),
    "model.name": _one_of(tuple(MODELS)),
    "model.widths": _int_tuple(1, 12, 1),
    "model.num_classes": _one_of((NUM_CLASSES,)),
    "model.convs_per_block": _int_at_least(1),
    "model.use_batchnorm": _flag,
    "model.upsample": _one_of(UPSAMPLING),
    "model.skip": _flag,
    "model.fluid_head": _flag,
    "model.boundary_head": _flag,
    "loss.name": _one_of(tuple(sorted(LOSSES))),
    "loss.dice_weight": _number_in(0.0, 1e6),
    "loss.dice_mode": _one_of(DICE_MODES),
    "loss.boundary_weight": _number_in(0.0, 1e6),
    "loss.layer_weight": _number_in(0.0, 1e6),
    "loss.fluid_weight": _number_in(0.0, 1e6),
    "loss.boundary_head_weight": _number_in(0.0, 1e6),
    "train.optimizer": _one_of(OPTIMIZERS),
    "train.weight_decay": _number_in(0.0, 1e3),
    "train.momentum": _number_in(0.0, 1.0),
    "train.schedule": _one_of(SCHEDULES),
    "train.warmup_epochs": _int_at_least(0),
    "train.batch_size": _int_at_least(1),
    "train.eval_batch_size": _int_at_least(1),
    "train.num_epochs": _int_at_least(1),
    "train.learning_rate": _number_in(0.0, 1e3, open_low=True),
    "train.plateau_factor": _number_in(0.0, 1.0, open_low=True),
    "train.plateau_patience": _int_at_least(0),
    "train.early_stopping_patience": _int_at_least(0),
    "train.min_delta": _number_in(0.0, 1e6),
    "train.compute_dtype": _one_of(COMPUTE_DTYPES),
    "train.checkpoint_every": _int_at_least(1),
    "train.num_devices": _int_at_least(0),
    "train.image_summary_every": _int_at_least(0),
    "predict.members": _int_at_least(0),
    "predict.uncertain_um": _number_in(0.0, 1e6),
    "explain.layers": _names,
    "explain.method": _one_of(CAM_METHODS),
    "explain.target": _one_of(CAM_TARGETS),
    "explain.box": _box,
    "explain.deletion_steps": _int_at_least(1),
    "explain.road_steps": _int_at_least(1),
    "explain.road_noise": _number_in(0.0, 1.0, open_low=True),
    "explain.max_scans": _int_at_least(1),
    "benchmark.steps": _int_at_least(1),
    "benchmark.warmup": _int_at_least(0),
    "benchmark.batch_size": _int_at_least(0),
    "benchmark.explain": _flag,
}


def get_field(config, dotted: str):
  """config['a']['b'] for 'a.b' (ConfigDict or nested dict), or MISSING."""
  node = config
  for part in dotted.split("."):
    try:
      node = node[part]
    except (KeyError, TypeError, AttributeError):
      return MISSING
  return node


MISSING = object()


def _where(prefix: str, field: str, value) -> str:
  shown = repr(value) if isinstance(value, str) else value
  return f"{prefix}{field}={shown}"


def validate(config, check_files: bool = True, prefix: str = "--config.") -> None:
  """Raises an InputError naming the first invalid field of `config`.

  Args:
    config: an ml_collections ConfigDict (or nested dict) with the fields of configs/default.py.
    check_files: also check that the data folders of the configured source exist (training);
      off for configs stored in a workdir, whose data may live elsewhere.
    prefix: how a field is named in messages ('--config.' on the command line).
  """
  for field, check in CHECKS.items():
    value = get_field(config, field)
    if value is MISSING:
      continue                   # fields of other versions; a missing one takes its default
    problem = check(value)
    if problem:
      raise InputError(f"{_where(prefix, field, value)}: {problem}")
  _check_relations(config, prefix)
  if check_files:
    _check_files(config, prefix)


def _check_relations(config, prefix: str) -> None:
  fold, folds = get_field(config, "data.fold"), get_field(config, "data.num_folds")
  if _is_int(fold) and _is_int(folds) and fold >= folds:
    raise InputError(f"{_where(prefix, 'data.fold', fold)}: must be below data.num_folds={folds}")
  recipe = get_field(config, "data.recipe.resize_to")
  widths = get_field(config, "model.widths")
  if isinstance(recipe, (list, tuple)) and len(recipe) == 2 and isinstance(widths, (list, tuple)):
    multiple = 2 ** len(widths)
    if any(r % multiple for r in recipe):
      raise InputError(f"{_where(prefix, 'data.recipe.resize_to', tuple(recipe))}: both sizes "
                       f"must be multiples of {multiple} (2 ** len(model.widths))")


def _check_files(config, prefix: str) -> None:
  source = get_field(config, "data.source")
  if source == "duke":
    path = get_field(config, "data.duke_dir")
    if not isinstance(path, str) or not os.path.isdir(path):
      raise InputError(f"{_where(prefix, 'data.duke_dir', path)}: no such folder")
  if source == "folder":
    path = get_field(config, "data.folder_dir")
    if not isinstance(path, str) or not path:
      raise InputError(f"{prefix}data.folder_dir: no folder given for source 'folder'")
    if not os.path.isdir(path):
      raise InputError(f"{_where(prefix, 'data.folder_dir', path)}: no such folder")


def check_split_record(split: Any, path: str, multiple: int = 1) -> Dict:
  """Checks the fields of a workdir's split.json that have no default (input_shape: two
  positive multiples of `multiple`, the model's 2 ** number of poolings)."""
  if not isinstance(split, dict):
    raise InputError(f"{path}: expected a JSON object, found {type(split).__name__}")
  shape = split.get("input_shape")
  if shape is None:
    raise InputError(f"{path}: field 'input_shape' is missing (it has no default; "
                     "the workdir is incomplete)")
  if _int_tuple(2, 2, 1)(shape) or any(s % multiple for s in shape):
    raise InputError(f"{path}: field 'input_shape'={shape!r}: expected two positive multiples "
                     f"of {multiple}")
  return split


def check_split_names(split: Dict, path: str) -> Dict:
  """The 'val' record of split.json ({'names': [...], 'subjects': [...]}) that eval needs."""
  val = split.get("val")
  if not isinstance(val, dict) or not isinstance(val.get("names"), list) or \
     not all(isinstance(n, str) for n in val["names"]):
    raise InputError(f"{path}: field 'val.names' is missing or not a list of scan names "
                     "(pass --input to evaluate on other data)")
  return val

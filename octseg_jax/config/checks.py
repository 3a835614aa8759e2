"""Checks of a whole config before anything is written, and of a workdir's split.json.

`validate(config)` raises an InputError naming the first bad field (`--config.a.b=value:
problem`): every field's own check (config.schema.FIELDS), then the relations between fields
and, for training, the data folders. The command line and train_and_evaluate call it before a
workdir is created or touched, and workdir.load_config on stored configs (whose missing fields
take their defaults). `check_split_record` / `check_split_names` check a workdir's split.json.
"""

from typing import Any, Dict

from octseg_jax.config.paths import MISSING, get_field
from octseg_jax.config.schema import FIELDS
from octseg_jax.config.values import int_tuple, is_int, is_number
from octseg_jax.data import preprocessing
from octseg_jax.errors import InputError, folder_problem


def _where(prefix: str, field: str, value) -> str:
  """--config.FIELD=VALUE as given: a string quoted, and a tuple field's text that could not be
  read as numbers as typed (absl keeps it as a one-string tuple)."""
  if isinstance(value, tuple) and len(value) == 1 and isinstance(value[0], str):
    return f"{prefix}{field}={value[0]}"
  shown = repr(value) if isinstance(value, str) else value
  return f"{prefix}{field}={shown}"


def validate(config, check_files: bool = True, prefix: str = "--config.") -> None:
  """Raises an InputError naming the first invalid field of `config`.

  Args:
    config: an ml_collections ConfigDict (or nested dict) with the fields of config.schema.
    check_files: also check that the data folders of the configured source exist (training);
      off for configs stored in a workdir, whose data may live elsewhere.
    prefix: how a field is named in messages ('--config.' on the command line).
  """
  for field, spec in FIELDS.items():
    value = get_field(config, field)
    if value is MISSING:
      continue                   # fields of other versions; a missing one takes its default
    problem = spec.check(value)
    if problem:
      raise InputError(f"{_where(prefix, field, value)}: {problem}")
  _check_relations(config, prefix)
  if check_files:
    _check_files(config, prefix)


def _check_relations(config, prefix: str) -> None:
  fold, folds = get_field(config, "data.fold"), get_field(config, "data.num_folds")
  if is_int(fold) and is_int(folds) and fold >= folds:
    raise InputError(f"{_where(prefix, 'data.fold', fold)}: must be below data.num_folds={folds}")
  column_weight = get_field(config, "loss.fluid_column_weight")
  if is_number(column_weight) and column_weight > 0 and not (
      get_field(config, "model.fluid_head") is True
      and get_field(config, "loss.name") == "weighted_hybrid"):
    raise InputError(f"{_where(prefix, 'loss.fluid_column_weight', column_weight)}: needs "
                     "model.fluid_head=True (the fluid columns come from its labels) and "
                     "loss.name='weighted_hybrid' (the weighted CE it weights)")
  recipe = get_field(config, "data.recipe.resize_to")
  widths = get_field(config, "model.widths")
  if isinstance(recipe, (list, tuple)) and len(recipe) == 2 and isinstance(widths, (list, tuple)):
    multiple = preprocessing.input_multiple(widths)
    if any(r % multiple for r in recipe):
      raise InputError(f"{_where(prefix, 'data.recipe.resize_to', tuple(recipe))}: both sizes "
                       f"must be multiples of {multiple} (2 ** len(model.widths))")


def _check_files(config, prefix: str) -> None:
  source = get_field(config, "data.source")
  if source == "duke":
    path = get_field(config, "data.duke_dir")
    problem = folder_problem(path)
    if problem:
      raise InputError(f"{_where(prefix, 'data.duke_dir', path)}: {problem}")
  if source == "folder":
    path = get_field(config, "data.folder_dir")
    if not isinstance(path, str) or not path:
      raise InputError(f"{prefix}data.folder_dir: no folder given for source 'folder'")
    problem = folder_problem(path)
    if problem:
      raise InputError(f"{_where(prefix, 'data.folder_dir', path)}: {problem}")


def check_split_record(split: Any, path: str, multiple: int = 1) -> Dict:
  """Checks the fields of a workdir's split.json that have no default (input_shape: two
  positive multiples of `multiple`, the model's 2 ** number of poolings)."""
  if not isinstance(split, dict):
    raise InputError(f"{path}: expected a JSON object, found {type(split).__name__}")
  shape = split.get("input_shape")
  if shape is None:
    raise InputError(f"{path}: field 'input_shape' is missing (it has no default; "
                     "the workdir is incomplete)")
  if int_tuple(2, 2, 1)(shape) or any(s % multiple for s in shape):
    raise InputError(f"{path}: field 'input_shape'={shape!r}: expected two positive multiples "
                     f"of {multiple}")
  train = split.get("train", {})
  for field in ("names", "fingerprints"):      # optional; inference matches scans with them
    values = train.get(field, []) if isinstance(train, dict) else None
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
      raise InputError(f"{path}: field 'train.{field}' is not a list of strings")
  return split


def check_split_names(split: Dict, path: str) -> Dict:
  """The 'val' record of split.json ({'names': [...], 'subjects': [...]}) that eval needs."""
  val = split.get("val")
  if not isinstance(val, dict) or not isinstance(val.get("names"), list) or \
     not all(isinstance(n, str) for n in val["names"]):
    raise InputError(f"{path}: field 'val.names' is missing or not a list of scan names "
                     "(pass --input to evaluate on other data)")
  return val

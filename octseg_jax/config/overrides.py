"""`--config.FIELD=VALUE` for eval, predict and explain: the settings that belong to inference.

A trained workdir's `config.json` fixes the model, its data recipe and its training. What may
change at inference time is listed in FIELDS (with a parser each); any other existing field is
refused (it would change the model), a field that does not exist is refused with the nearest
name. The explain flags `--cam_layers/--cam_method/--cam_target/--cam_box` are short aliases of
explain.* fields; giving both with different values is an error.
"""

import difflib
from typing import Callable, Dict, List, Sequence, Tuple

from octseg_jax.errors import InputError
from octseg_jax.cam.gradcam import METHODS, TARGETS

PREFIX = "--config."
INFERENCE_MODES = ("eval", "predict", "explain")


def _names(value: str) -> Tuple[str, ...]:
  names = tuple(v.strip().strip("'\"") for v in value.strip("()[] ").split(",") if v.strip())
  if not names:
    raise ValueError("expected one or more comma-separated names")
  return names


def _choice(*choices: str) -> Callable[[str], str]:
  def parse(value: str) -> str:
    if value not in choices:
      raise ValueError(f"expected one of {', '.join(choices)}")
    return value
  return parse


def _int_at_least(low: int) -> Callable[[str], int]:
  def parse(value: str) -> int:
    try:
      number = int(value)
    except ValueError:
      raise ValueError("expected a whole number") from None
    if number < low:
      raise ValueError(f"expected a number >= {low}")
    return number
  return parse


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)


def _box(value: str) -> Tuple[int, ...]:
  parts = [v for v in value.strip("()[] ").split(",") if v.strip()]
  try:
    box = tuple(int(v) for v in parts)
  except ValueError:
    raise ValueError("expected row0,col0,row1,col1 as integers") from None
  if len(box) not in (0, 4):
    raise ValueError(f"expected row0,col0,row1,col1 (4 integers), got {len(box)}")
  return box


def _positive_float(value: str) -> float:
  try:
    number = float(value)
  except ValueError:
    raise ValueError(f"expected a number, got {value!r}") from None
  if not number > 0:
    raise ValueError(f"expected a number above 0, got {value}")
  return number


# Field -> parser of the command-line text.
FIELDS: Dict[str, Callable] = {
    "explain.layers": _names,
    "explain.method": _choice(*METHODS),
    "explain.target": _choice(*TARGETS),
    "explain.box": _box,
    "explain.max_scans": _positive_int,
    "explain.deletion_steps": _positive_int,
    "explain.road_steps": _positive_int,
    "explain.road_noise": _positive_float,
    "train.eval_batch_size": _positive_int,
    "predict.members": _non_negative_int,
    "predict.uncertain_um": _positive_float,
}
# Short flags of explain mode and the field each one sets.
ALIASES = {"cam_layers": "explain.layers", "cam_method": "explain.method",
           "cam_target": "explain.target", "cam_box": "explain.box"}


def mode_of(argv: Sequence[str]) -> str:
  """The --mode value in a raw argv (absl's default 'train' when absent)."""
  mode = "train"
  for i, arg in enumerate(argv):
    if arg.startswith("--mode="):
      mode = arg.split("=", 1)[1]
    elif arg == "--mode" and i + 1 < len(argv):
      mode = argv[i + 1]
  return mode


def split_argv(argv: Sequence[str]) -> Tuple[List[str], List[str]]:
  """(other args, `--config.FIELD=VALUE` args). `--config.FIELD VALUE` is joined."""
  rest, overrides = [], []
  i = 0
  while i < len(argv):
    arg = argv[i]
    if arg.startswith(PREFIX) and "=" not in arg and i + 1 < len(argv):
      overrides.append(f"{arg}={argv[i + 1]}")
      i += 2
      continue
    (overrides if arg.startswith(PREFIX) else rest).append(arg)
    i += 1
  return rest, overrides


def _has_field(config, field: str) -> bool:
  from octseg_jax.config.checks import MISSING, get_field
  return get_field(config, field) is not MISSING


def _all_fields(config, prefix: str = "") -> List[str]:
  out = []
  for key, value in config.items():
    name = prefix + key
    out += _all_fields(value, name + ".") if hasattr(value, "items") else [name]
  return out


def parse(args: Sequence[str], mode: str) -> Dict[str, object]:
  """`--config.FIELD=VALUE` args -> {field: typed value}. Raises InputError naming the option
  for a misspelt field, a model-changing one (any other field of configs/default.py, the one
  list of fields) or a badly typed value."""
  from configs import default
  config = default.get_config()
  out = {}
  for arg in args:
    if not arg.startswith(PREFIX) or "=" not in arg:
      raise InputError(f"{arg}: expected --config.FIELD=VALUE")
    field, value = arg[len(PREFIX):].split("=", 1)
    option = f"{PREFIX}{field}"
    if field not in FIELDS:
      if _has_field(config, field):
        raise InputError(f"{option}: changes the trained model, so --mode={mode} cannot "
                         "override it (it uses the workdir's config.json); settable: "
                         + ", ".join(FIELDS))
      near = difflib.get_close_matches(field, list(FIELDS) + _all_fields(config), n=1)
      hint = f' Did you mean "{near[0]}"?' if near else ""
      raise InputError(f"{option}: no such field in the config.{hint}")
    try:
      out[field] = FIELDS[field](value)
    except ValueError as e:
      raise InputError(f"{option}={value}: {e}") from None
  return out


def merge_aliases(overrides: Dict[str, object], flag_values: Dict[str, object]) -> Dict:
  """Adds the short flags (--cam_*) to the overrides. A flag and the override of the same
  field with different values is an error. flag_values: {flag name: value or None}."""
  merged = dict(overrides)
  for flag, value in flag_values.items():
    if value is None or value == []:
      continue
    field = ALIASES[flag]
    text = ",".join(value) if isinstance(value, (list, tuple)) else str(value)
    try:
      parsed = FIELDS[field](text)
    except ValueError as e:
      raise InputError(f"--{flag}={text}: {e}") from None
    if field in merged and merged[field] != parsed:
      given = merged[field]
      given = ",".join(map(str, given)) if isinstance(given, tuple) else given
      raise InputError(f"--{flag}={text} and {PREFIX}{field}={given} disagree; give one of "
                       "them")
    merged[field] = parsed
  return merged


"""`--config.FIELD=VALUE` for eval, predict and explain: the settings that belong to inference.

A trained workdir's `config.json` fixes the model, its data recipe and its training. What may
change at inference time is the schema's fields marked `inference` (FIELDS, each parsed
and checked by its schema entry); any other existing field is
refused (it would change the model), a field that does not exist is refused with the nearest
name. The explain flags `--cam_layers/--cam_method/--cam_target/--cam_box` are short aliases of
explain.* fields; giving both with different values is an error.
"""

from typing import Dict, List, Sequence, Tuple

from octseg_jax.config import schema
from octseg_jax.errors import InputError

PREFIX = "--config."
INFERENCE_MODES = ("predict", "explain", "eval")
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


def parse(args: Sequence[str], mode: str) -> Dict[str, object]:
  """`--config.FIELD=VALUE` args -> {field: typed value}. Raises InputError naming the option
  for a misspelt field, a model-changing one (any other field of config.schema, the one
  list of fields) or a badly typed value."""
  out = {}
  settable = schema.inference_fields(mode)       # config.schema: Field.inference
  for arg in args:
    if not arg.startswith(PREFIX) or "=" not in arg:
      raise InputError(f"{arg}: expected --config.FIELD=VALUE")
    field, value = arg[len(PREFIX):].split("=", 1)
    option = f"{PREFIX}{field}"
    if field not in settable:
      if field in schema.inference_fields():
        modes = " and ".join(f"--mode={m}" for m in schema.FIELDS[field].inference)
        raise InputError(f"{option}: only {modes} accepts it, not --mode={mode}")
      if field in schema.FIELDS:
        raise InputError(f"{option}: set when the model was trained, so --mode={mode} cannot "
                         "override it (it uses the workdir's config.json); settable: "
                         + ", ".join(settable))
      raise InputError(schema.no_such_field(field))
    try:
      out[field] = schema.FIELDS[field].parse(value)
    except ValueError as e:
      raise InputError(f"{option}={value}: {e}") from None
  return out


def merge_aliases(overrides: Dict[str, object], flag_values: Dict[str, object]) -> Dict:
  """Adds the short flags (--cam_*) to the overrides. A flag and the override of the same
  field with different values is an error, and so is a flag given empty (--cam_layers=),
  which would otherwise mean the default. flag_values: {flag name: value or None}."""
  merged = dict(overrides)
  for flag, value in flag_values.items():
    if value is None:
      continue
    if value in ([], ""):
      raise InputError(f"--{flag}=: empty; give a value ({PREFIX}{ALIASES[flag]}) or leave the "
                       "flag out for the workdir's")
    field = ALIASES[flag]
    text = ",".join(value) if isinstance(value, (list, tuple)) else str(value)
    try:
      parsed = schema.FIELDS[field].parse(text)
    except ValueError as e:
      raise InputError(f"--{flag}={text}: {e}") from None
    if field in merged and merged[field] != parsed:
      given = merged[field]
      given = ",".join(map(str, given)) if isinstance(given, tuple) else given
      raise InputError(f"--{flag}={text} and {PREFIX}{field}={given} disagree; give one of "
                       "them")
    merged[field] = parsed
  return merged


"""A training workdir's files that are not checkpoints: config.json, JSON reading, the rerun
check and the lock.

Rerunning training on a workdir resumes it. The stored config.json is compared with the new
config first: the schema's resumable fields may differ (they are listed, and the new values
are stored); any other difference ends with one line naming the fields, before anything in the
workdir is touched. A field missing from a stored config takes its default (config.schema)
and so compares equal to it: workdirs written before a field existed still load and resume.
Stored fields that no longer exist are ignored.

A lock file (`.lock`, outputs/lock.py: the owner's PID, host and what it does) makes a second
training into a busy workdir stop with one line; a lock whose owner process is gone (same host,
PID not running) is taken over.
"""

import json
import os
from typing import Any, Dict, List, Tuple

import ml_collections

from octseg_jax.config import schema
from octseg_jax.config.paths import flatten, set_field
from octseg_jax.errors import InputError
from octseg_jax.layout import CONFIG_FILE
from octseg_jax.outputs.atomic import write_text
from octseg_jax.outputs.lock import FolderLock

LOCK_NAME = ".lock"


def config_to_json(config) -> str:
  return config.to_json_best_effort(indent=2)


def read_json(path: str) -> Any:
  """The one JSON reader for workdir files; errors name the file."""
  try:
    with open(path) as f:
      return json.load(f)
  except FileNotFoundError:
    raise InputError(f"{path}: missing") from None
  except (OSError, ValueError) as e:
    raise InputError(f"{path}: not readable JSON ({e})") from None


def merge_onto_defaults(stored: Dict) -> Tuple[ml_collections.ConfigDict, List[str]]:
  """(defaults overwritten by the stored values, stored fields that no longer exist)."""
  config = schema.default_config()
  defaults = flatten(config)
  obsolete = []
  for key, value in flatten(stored).items():
    if key not in defaults:
      obsolete.append(key)
      continue
    set_field(config, key, value)
  return config, obsolete


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The workdir's config.json on top of today's defaults; every stored value is checked
  (config.checks.validate) and an invalid one is named with the file."""
  from octseg_jax.config.checks import validate
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    raise InputError(f"{workdir}: no config.json (not a training workdir?)")
  stored = read_json(path)
  if not isinstance(stored, dict):
    raise InputError(f"{path}: expected a JSON object, found {type(stored).__name__}")
  defaults = schema.default_config()
  for key, value in stored.items():
    if isinstance(defaults.get(key), ml_collections.ConfigDict) and not isinstance(value, dict):
      raise InputError(f"{path}: field '{key}' should be an object, found "
                       f"{type(value).__name__}")
  validate(stored, check_files=False, prefix=f"{path}: field ")
  try:
    return merge_onto_defaults(stored)[0]
  except (TypeError, ValueError, KeyError, AttributeError) as e:
    raise InputError(f"{path}: a field has a value of the wrong type ({e})") from None


def config_differences(stored, new) -> Tuple[List[str], List[str]]:
  """(allowed, refused) dotted field names whose values differ between two configs."""
  a, b = flatten(stored), flatten(new)
  changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
  resumable = schema.resumable_fields()
  return [k for k in changed if k in resumable], [k for k in changed if k not in resumable]


def check_rerun(workdir: str, config) -> List[str]:
  """Compares a rerun's config with the workdir's stored one (read-only). Returns the allowed
  differences; raises InputError naming the others."""
  if not os.path.exists(os.path.join(workdir, CONFIG_FILE)):
    return []
  stored = load_config(workdir)
  allowed, refused = config_differences(stored, config)
  if refused:
    shown = ", ".join(f"{k} ({flatten(stored).get(k)!r} -> {flatten(config).get(k)!r})"
                      for k in refused[:4]) + (" ..." if len(refused) > 4 else "")
    raise InputError(f"{workdir}: was trained with another config; changed: {shown}. Only "
                     f"{schema.resumable_summary()} may change on resume; use a new --workdir")
  return allowed


def WorkdirLock(workdir: str, busy: str = "is training into it") -> FolderLock:  # noqa: N802
  """The lock of a workdir being trained or changed (outputs.lock.FolderLock; `busy`: what its
  holder does, for the line that refuses another; the name training has always used)."""
  return FolderLock(workdir, LOCK_NAME, busy)


def write_config(workdir: str, config) -> None:
  write_text(os.path.join(workdir, CONFIG_FILE), config_to_json(config))

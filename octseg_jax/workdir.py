"""A training workdir's files that are not checkpoints: config.json, JSON reading, the rerun
check and the lock.

Rerunning training on a workdir resumes it. The stored config.json is compared with the new
config first: fields in RESUMABLE_FIELDS may differ (they are listed, and the new values are
stored); any other difference ends with one line naming the fields, before anything in the
workdir is touched. A field missing from a stored config takes its default (configs/default.py)
and so compares equal to it: workdirs written before a field existed still load and resume.
Stored fields that no longer exist are ignored.

A lock file (`.lock`, created with O_CREAT | O_EXCL, holding the owner's PID and host) makes
a second training into a busy workdir stop with one line; a lock whose owner process is gone
(same host, PID not running) is taken over.
"""

import errno
import json
import os
import socket
from typing import Any, Dict, List, Tuple

import ml_collections

from octseg_jax.errors import InputError
from octseg_jax.io_utils import write_text

# Fields that may change between runs into one workdir ("a.b" = one field, "a.*" = a section).
RESUMABLE_FIELDS = (
    "train.num_epochs", "train.early_stopping_patience", "train.image_summary_every",
    "train.num_devices", "train.checkpoint_every", "train.eval_batch_size",
    "data.duke_dir", "data.folder_dir", "explain.*", "benchmark.*", "predict.*",
)
LOCK_NAME = ".lock"


def default_config() -> ml_collections.ConfigDict:
  from configs import default   # the one list of fields and defaults
  return default.get_config()


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


def flatten(tree: Any, prefix: str = "") -> Dict[str, Any]:
  """{'a.b': value} for a nested dict or ConfigDict; lists become tuples (JSON vs config)."""
  if hasattr(tree, "items") and not isinstance(tree, (str, bytes)):
    out = {}
    for key, value in tree.items():
      out.update(flatten(value, f"{prefix}{key}."))
    return out
  if isinstance(tree, list):
    tree = tuple(tree)
  return {prefix[:-1]: tree}


def merge_onto_defaults(stored: Dict) -> Tuple[ml_collections.ConfigDict, List[str]]:
  """(defaults overwritten by the stored values, stored fields that no longer exist)."""
  config = default_config()
  defaults = flatten(config)
  obsolete = []
  for key, value in flatten(stored).items():
    if key not in defaults:
      obsolete.append(key)
      continue
    node = config
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  return config, obsolete


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The workdir's config.json on top of today's defaults; every stored value is checked
  (config_checks.validate) and an invalid one is named with the file."""
  from octseg_jax.config_checks import validate
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise InputError(f"{workdir}: no config.json (not a training workdir?)")
  stored = read_json(path)
  if not isinstance(stored, dict):
    raise InputError(f"{path}: expected a JSON object, found {type(stored).__name__}")
  defaults = default_config()
  for key, value in stored.items():
    if isinstance(defaults.get(key), ml_collections.ConfigDict) and not isinstance(value, dict):
      raise InputError(f"{path}: field '{key}' should be an object, found "
                       f"{type(value).__name__}")
  validate(stored, check_files=False, prefix=f"{path}: field ")
  try:
    return merge_onto_defaults(stored)[0]
  except (TypeError, ValueError, KeyError, AttributeError) as e:
    raise InputError(f"{path}: a field has a value of the wrong type ({e})") from None


def _resumable(key: str) -> bool:
  return any(key == f or (f.endswith(".*") and key.startswith(f[:-1])) for f in RESUMABLE_FIELDS)


def config_differences(stored, new) -> Tuple[List[str], List[str]]:
  """(allowed, refused) dotted field names whose values differ between two configs."""
  a, b = flatten(stored), flatten(new)
  changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
  return [k for k in changed if _resumable(k)], [k for k in changed if not _resumable(k)]


def check_rerun(workdir: str, config) -> List[str]:
  """Compares a rerun's config with the workdir's stored one (read-only). Returns the allowed
  differences; raises InputError naming the others."""
  if not os.path.exists(os.path.join(workdir, "config.json")):
    return []
  stored = load_config(workdir)
  allowed, refused = config_differences(stored, config)
  if refused:
    shown = ", ".join(f"{k} ({flatten(stored).get(k)!r} -> {flatten(config).get(k)!r})"
                      for k in refused[:4]) + (" ..." if len(refused) > 4 else "")
    raise InputError(f"{workdir}: was trained with another config; changed: {shown}. Only "
                     f"{', '.join(RESUMABLE_FIELDS)} may change on resume; use a new --workdir")
  return allowed


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


class WorkdirLock:
  """Exclusive ownership of a workdir for one training process (context manager)."""

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, LOCK_NAME)
    self.held = False

  def _owner(self) -> Tuple[int, str]:
    try:
      with open(self.path) as f:
        pid, host = f.read().split()[:2]
      return int(pid), host
    except (OSError, ValueError):
      return -1, ""

  def acquire(self) -> None:
    for _ in range(2):
      try:
        fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
      except FileExistsError:
        pid, host = self._owner()
        if host == socket.gethostname() and pid > 0 and not _pid_alive(pid):
          os.remove(self.path)              # its owner is gone: take it over
          continue
        who = f"process {pid} on {host}" if pid > 0 else "another process"
        raise InputError(f"{os.path.dirname(self.path)}: busy, {who} is training into it "
                         f"(if it is not, delete {self.path})") from None
      except OSError as e:
        if e.errno == errno.ENOENT:
          raise InputError(f"{os.path.dirname(self.path)}: no such folder") from None
        raise InputError(f"{self.path}: cannot create the lock file ({e.strerror})") from None
      with os.fdopen(fd, "w") as f:
        f.write(f"{os.getpid()} {socket.gethostname()}\n")
      self.held = True
      return
    raise InputError(f"{self.path}: could not take over a stale lock")

  def release(self) -> None:
    if self.held:
      try:
        os.remove(self.path)
      except FileNotFoundError:
        pass
      self.held = False

  def __enter__(self):
    self.acquire()
    return self

  def __exit__(self, *exc):
    self.release()
    return False


def write_config(workdir: str, config) -> None:
  write_text(os.path.join(workdir, "config.json"), config_to_json(config))

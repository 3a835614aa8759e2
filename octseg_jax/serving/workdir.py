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
from octseg_jax.outputs.atomic import write_text

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
  from octseg_jax.config.checks import validate
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


def pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


class FolderLock:
  """Exclusive ownership of a folder for one process (context manager): a lock file holding
  the owner's pid and host, created atomically with its content (written to a temporary file,
  then hard-linked into place), so a full disk leaves no lock rather than an empty one. A lock
  whose owner is gone (dead pid on this host, or no readable owner) is taken over, and with
  `own_is_stale` also one of this very process (an output folder of an earlier run in the
  process that ended in an error); one of a live process is refused in one line."""

  def __init__(self, folder: str, name: str = LOCK_NAME, busy: str = "is training into it",
               own_is_stale: bool = False):
    self.path = os.path.join(folder, name)
    self.busy = busy
    self.own_is_stale = own_is_stale
    self.held = False

  def _owner(self) -> Tuple[int, str]:
    try:
      with open(self.path) as f:
        pid, host = f.read().split()[:2]
      return int(pid), host
    except (OSError, ValueError):
      return -1, ""

  def _stale(self) -> bool:
    pid, host = self._owner()
    if pid == os.getpid() and host == socket.gethostname():
      return self.own_is_stale
    return pid <= 0 or (host == socket.gethostname() and not pid_alive(pid))

  def acquire(self) -> None:
    folder = os.path.dirname(self.path)
    if not os.path.isdir(folder):
      raise InputError(f"{folder}: no such folder")
    tmp = f"{self.path}.{os.getpid()}.tmp"
    try:
      with open(tmp, "w") as f:
        f.write(f"{os.getpid()} {socket.gethostname()}\n")
      for _ in range(5):
        if self._place(tmp):
          self.held = True
          return
        if not self._stale():
          pid, host = self._owner()
          raise InputError(f"{folder}: busy, process {pid} on {host} {self.busy} (if it "
                           f"is not, delete {self.path})")
        self._take_over()
    except OSError as e:
      raise InputError(f"{folder}: cannot create the lock file ({e.strerror})") from None
    finally:
      if os.path.exists(tmp):
        os.remove(tmp)
    raise InputError(f"{self.path}: could not take over a stale lock")

  def _place(self, tmp: str) -> bool:
    """Puts the complete lock file `tmp` at the lock's path unless one is there: a hard link
    (atomic), or on file systems without links an exclusive create and write."""
    try:
      os.link(tmp, self.path)
      return True
    except FileExistsError:
      return False
    except OSError as e:
      if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS):
        raise
    try:
      fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
      return False
    with open(tmp) as src, os.fdopen(fd, "w") as f:
      f.write(src.read())
    return True

  def _take_over(self) -> None:
    """Moves a stale lock aside (atomic rename) and checks that what moved is still the stale
    one; a lock another process placed meanwhile is put back."""
    aside = f"{self.path}.{os.getpid()}.stale"
    owner = self._owner()
    try:
      os.rename(self.path, aside)
    except FileNotFoundError:
      return                                         # gone meanwhile: try to place ours
    moved = FolderLock(os.path.dirname(aside), os.path.basename(aside))._owner()
    if moved != owner and not FolderLock(os.path.dirname(aside), os.path.basename(aside),
                                         own_is_stale=self.own_is_stale)._stale():
      try:
        os.link(aside, self.path)                    # a live lock: put it back
      except FileExistsError:
        pass
    os.remove(aside)

  def release(self) -> None:
    """Removes the lock file if it is still this process's."""
    if self.held:
      if self._owner() == (os.getpid(), socket.gethostname()):
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


def WorkdirLock(workdir: str) -> FolderLock:  # noqa: N802  (the name training has always used)
  """The lock of a workdir being trained."""
  return FolderLock(workdir, LOCK_NAME, "is training into it")


def write_config(workdir: str, config) -> None:
  write_text(os.path.join(workdir, "config.json"), config_to_json(config))

"""One process owns a folder at a time: a lock file holding the owner's PID, host and what it
does, placed atomically with its content. Training locks its workdir (serving/workdir.py
WorkdirLock), predict and explain their output folder (outputs/folder_run.py), the campaign
runner its state folder (scripts/campaign.py). A lock whose owner is gone is taken over; one of
a live process is refused in one line (InputError)."""

import errno
import os
import socket
from typing import Tuple

from octseg_jax.errors import InputError

HOLDS = "holds its lock"      # what a lock's owner does, where it says nothing more


def pid_alive(pid: int) -> bool:
  """Whether a process of this host with that PID exists (one of another user counts)."""
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


class FolderLock:
  """Exclusive ownership of a folder for one process (context manager): a lock file holding the
  owner's pid, host and `busy`, created atomically with its content (written to a temporary
  file, then hard-linked into place), so a full disk leaves no lock rather than an empty one. A
  lock whose owner is gone (dead pid on this host, or no readable owner) is taken over, and with
  `own_is_stale` also one of this very process (an output folder of an earlier run in the
  process that ended in an error); one of a live process is refused in one line, which says what
  the owner does (its `busy`, written after pid and host; older locks: that it holds it)."""

  def __init__(self, folder: str, name: str, busy: str = HOLDS,
               own_is_stale: bool = False):
    self.path = os.path.join(folder, name)
    self.busy = busy
    self.own_is_stale = own_is_stale
    self.held = False

  def _owner(self) -> Tuple[int, str]:
    return self._record()[:2]

  def _record(self) -> Tuple[int, str, str]:
    """The lock file's (pid, host, what the owner does: HOLDS for older locks of
    pid and host only); (-1, '', that) when it cannot be read."""
    try:
      with open(self.path) as f:
        pid, host, *busy = f.read().split()
      return int(pid), host, " ".join(busy) or HOLDS
    except (OSError, ValueError):
      return -1, "", HOLDS

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
        f.write(f"{os.getpid()} {socket.gethostname()} {self.busy}\n")
      for _ in range(5):
        if self._place(tmp):
          self.held = True
          return
        if not self._stale():
          raise self._busy_error()
        self._take_over()
    except OSError as e:
      raise InputError(f"{folder}: cannot create the lock file ({e.strerror})") from None
    finally:
      if os.path.exists(tmp):
        os.remove(tmp)
    raise InputError(f"{self.path}: could not take over a stale lock")

  def refuse_if_busy(self) -> None:
    """The InputError acquire would raise now (a live owner holds the lock), without taking
    it: for checks made before a run starts writing."""
    if os.path.exists(self.path) and not self._stale():
      raise self._busy_error()

  def _busy_error(self) -> InputError:
    pid, host, busy = self._record()
    return InputError(f"{os.path.dirname(self.path)}: busy, process {pid} on {host} "
                      f"{busy} (if it is not, delete {self.path})")

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

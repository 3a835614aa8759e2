"""The one exception type that users see as a one-line message, and the tests on library
errors that decide it."""

import errno
import os
from typing import Optional


class InputError(Exception):
  """Bad input or state that the user can fix: a file, a config value, a workdir.

  main.py prints `error: <message>` and exits with status 2 (no traceback unless --debug).
  The message names the file (or option) and the problem in one line.
  """


def one_line(text) -> str:
  """A message as one line: newlines and runs of whitespace (library texts have them) become
  single spaces."""
  return " ".join(str(text).split())


def library_reason(error: BaseException, limit: int = 120) -> str:
  """A library's exception as 'Type: text' in one line, the text at most `limit` characters:
  an OSError with a file name gives its reason and that name; a longer text keeps its start and
  its end (where a path ends in the file's name), cut in the middle."""
  text = one_line(f"{error.strerror}: {error.filename}" if isinstance(error, OSError)
                  and error.strerror and error.filename else error)
  if len(text) > limit:
    head = limit // 3
    text = f"{text[:head]}...{text[head + 3 - limit:]}"
  return f"{type(error).__name__}: {text}"


def folder_problem(path) -> Optional[str]:
  """Why `path` is not a folder to read ('no such folder', or 'is a file, expected a folder'
  where a file stands there), or None for a folder."""
  if isinstance(path, str) and os.path.isdir(path):
    return None
  if isinstance(path, str) and os.path.exists(path):
    return "is a file, expected a folder"
  return "no such folder"


def fail(path, problem: str) -> "InputError":
  """Builds an InputError whose message names `path` and `problem`."""
  return InputError(f"{path}: {problem}")


def disk_full(error) -> bool:
  """Whether an exception, or a library's error text, says the disk is full (ENOSPC; orbax and
  tensorstore report it as text with os_error_code 28)."""
  text = str(error)
  return (getattr(error, "errno", None) == errno.ENOSPC or "No space left on device" in text
          or "os_error_code='28'" in text)

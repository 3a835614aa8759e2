"""The one exception type that users see as a one-line message."""


class InputError(Exception):
  """Bad input or state that the user can fix: a file, a config value, a workdir.

  main.py prints `error: <message>` and exits with status 2 (no traceback unless --debug).
  The message names the file (or option) and the problem in one line.
  """


def fail(path, problem: str) -> "InputError":
  """Builds an InputError whose message names `path` and `problem`."""
  return InputError(f"{path}: {problem}")

"""The one exception type that users see as a one-line message."""


class InputError(Exception):
  """Bad input or state that the user can fix: a file, a config value, a workdir.

  main.py prints `error: <message>` and exits with status 2 (no traceback unless --debug).
  The message names the file (or option) and the problem in one line.
  """


def one_line(text) -> str:
  """A message as one line: newlines and runs of whitespace (library texts have them) become
  single spaces."""
  return " ".join(str(text).split())


def fail(path, problem: str) -> "InputError":
  """Builds an InputError whose message names `path` and `problem`."""
  return InputError(f"{path}: {problem}")

"""Checks of one config value, and the parser of a value given as command-line text.

A check returns None when the value is fine, or the problem in words. `one_of` checks carry
their `choices` (command-line flags offer them).
"""

import math
from typing import Any, Callable, Optional, Sequence, Tuple

Check = Callable[[Any], Optional[str]]


def is_int(v) -> bool:
  return isinstance(v, int) and not isinstance(v, bool)


def is_number(v) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def int_at_least(low: int) -> Check:
  return lambda v: None if is_int(v) and v >= low else f"expected an integer >= {low}"


def number_in(low: float, high: float, open_low: bool = False) -> Check:
  def check(v):
    if is_number(v) and (v > low if open_low else v >= low) and v <= high:
      return None
    return f"expected a number in {'(' if open_low else '['}{low:g}, {high:g}]"
  return check


def one_of(choices: Sequence) -> Check:
  choices = tuple(choices)

  def check(v):
    return None if v in choices else f"valid values are {', '.join(map(str, choices))}"
  check.choices = choices
  return check


def flag(v) -> Optional[str]:
  return None if isinstance(v, bool) else "expected True or False"


def text(v) -> Optional[str]:
  return None if isinstance(v, str) else "expected a text (a path)"


def int_tuple(min_len: int, max_len: int, low: int) -> Check:
  def check(v):
    if isinstance(v, (list, tuple)) and min_len <= len(v) <= max_len and \
       all(is_int(x) and x >= low for x in v):
      return None
    sizes = f"{min_len}" if min_len == max_len else f"{min_len} to {max_len}"
    return f"expected {sizes} integers >= {low}"
  return check


def positions(v) -> Optional[str]:
  """Positions in a file, from 0 (up to 10,000 of them)."""
  return int_tuple(0, 10_000, 0)(v) and "expected positions from 0, such as 5 or 2,5"


def resize_to(v) -> Optional[str]:
  if isinstance(v, (list, tuple)) and len(v) == 0:
    return None
  return int_tuple(2, 2, 8)(v) and "expected () or (rows, columns), integers >= 8"


def box(v) -> Optional[str]:
  if isinstance(v, (list, tuple)) and len(v) == 0:
    return None
  if int_tuple(4, 4, 0)(v) is None and v[2] > v[0] and v[3] > v[1]:
    return None
  return "expected () or (row0, col0, row1, col1) with row1 > row0 and col1 > col0"


def names(v) -> Optional[str]:
  if isinstance(v, (list, tuple)) and v and all(isinstance(x, str) and x for x in v):
    return None
  return "expected one or more layer names"


def _items(value: str) -> Tuple[str, ...]:
  return tuple(v.strip().strip("'\"") for v in value.strip("()[] ").split(",") if v.strip())


def parse_text(value: str, default) -> Any:
  """Command-line text as a value of the default's type (ValueError says what was expected).
  Tuples of names (a non-empty default of strings) and of integers (any other tuple)."""
  if isinstance(default, bool):          # absl's boolean syntax, as training's --config flags
    if value.lower() in ("true", "t", "1", "false", "f", "0"):
      return value.lower() in ("true", "t", "1")
    raise ValueError("expected true or false")
  if isinstance(default, int):
    try:
      return int(value)
    except ValueError:
      raise ValueError("expected a whole number") from None
  if isinstance(default, float):
    try:
      return float(value)
    except ValueError:
      raise ValueError(f"expected a number, got {value!r}") from None
  if isinstance(default, (tuple, list)):
    if default and isinstance(default[0], str):
      return _items(value)
    try:
      return tuple(int(v) for v in _items(value))
    except ValueError:
      raise ValueError("expected integers separated by commas") from None
  return value

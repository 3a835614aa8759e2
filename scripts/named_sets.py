"""The `--set=NAME:ITEM,ITEM,...` option of the cross-validation scripts (smoothing_cv,
flag_threshold_cv; smoothing_cv's --input too): one named list per option, names unique."""

from typing import Dict, List

from octseg_jax.errors import InputError


def parse(texts, item: str, option: str = "--set") -> Dict[str, List[str]]:
  """['NAME:A,B', ...] -> {NAME: [A, B]}; InputError (one line naming the option) for a text
  without a name or items, or a name given twice. `item` names an item in the message."""
  sets = {}
  for text in texts:
    name, sep, rest = text.partition(":")
    items = [i for i in rest.split(",") if i]
    if not sep or not name or not items:
      raise InputError(f"{option}={text}: expected NAME:{item}[,{item}...]")
    if name in sets:
      raise InputError(f"{option}={text}: the name {name!r} is given twice")
    sets[name] = items
  return sets

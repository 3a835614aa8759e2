"""Dotted field paths ('a.b') over a nested config (ConfigDict or dict): the one walker."""

from typing import Any, Dict

MISSING = object()


def get_field(config, dotted: str):
  """config['a']['b'] for 'a.b', or MISSING when some part is absent."""
  node = config
  for part in dotted.split("."):
    try:
      node = node[part]
    except (KeyError, TypeError, AttributeError, IndexError):
      return MISSING
  return node


def set_field(config, dotted: str, value) -> None:
  """config['a']['b'] = value (the parents must exist)."""
  node = config
  *parents, leaf = dotted.split(".")
  for part in parents:
    node = node[part]
  node[leaf] = value


def apply_overrides(config, overrides: Dict[str, Any]):
  """Sets each 'a.b': value of `overrides` (as `--config.a.b=v` does) and returns the config."""
  for dotted, value in overrides.items():
    set_field(config, dotted, value)
  return config


def unflatten(flat: Dict[str, Any]) -> Dict[str, Any]:
  """{'a.b': value} -> {'a': {'b': value}}: flatten's inverse, parents made as needed."""
  root: Dict[str, Any] = {}
  for dotted, value in flat.items():
    *parents, leaf = dotted.split(".")
    node = root
    for part in parents:
      node = node.setdefault(part, {})
    node[leaf] = value
  return root


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

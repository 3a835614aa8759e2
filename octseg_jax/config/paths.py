"""Dotted overrides of an ml_collections config, as `--config.a.b=v` does on the command line."""

from typing import Any, Dict


def apply_overrides(config, overrides: Dict[str, Any]):
  """Sets config['a']['b'] = v for each 'a.b': v (fields must exist) and returns the config."""
  for key, value in overrides.items():
    node = config
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  return config

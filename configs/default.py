"""All fields with their defaults. Other configs start from this one and change what differs.

Each field is declared once, with its default, its check, whether it may change when a workdir
resumes and whether eval/predict/explain may override it, in octseg_jax/config/schema.py
(FIELDS, with a line of documentation per field). Print them all with
`python -c "from configs import default; print(default.get_config())"`.
"""

import ml_collections

from octseg_jax.config import schema


def get_config() -> ml_collections.ConfigDict:
  return schema.default_config()

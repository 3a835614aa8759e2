"""The config schema: every field declared once, with its default, its check, whether it may
change when a workdir is resumed, and whether eval/predict/explain may override it.

configs/default.py is `default_config()`; the checks (`config.checks.validate`), the
inference overrides (`config.overrides`), the resume rule (`serving.workdir`) and the
command-line choices (main.py) all read FIELDS.
"""

import dataclasses
from typing import Any, Dict, Optional, Tuple, Union

import ml_collections

from octseg_jax.anatomy import NUM_CLASSES
from octseg_jax.cam.faithfulness import ROAD_NOISE
from octseg_jax.cam.gradcam import METHODS as CAM_METHODS, TARGETS as CAM_TARGETS
from octseg_jax.config import values as v
from octseg_jax.config.paths import unflatten
from octseg_jax.data.pipeline import SOURCES, SPLITS
from octseg_jax.data.preprocessing import BAND_HEIGHT, NORMALISATIONS
from octseg_jax.data.scans import MAX_IMAGE_SIDE, SPECTRALIS_ROW_UM
from octseg_jax.learning.losses import (BOUNDARY_WEIGHT, DICE_MODES, DICE_WEIGHT, LAYER_WEIGHT,
                                        LOSSES)
from octseg_jax.learning.optim import OPTIMIZERS, SCHEDULES
from octseg_jax.models import MODELS
from octseg_jax.models.segnet import UPSAMPLING

COMPUTE_DTYPES = ("float32", "bfloat16")


@dataclasses.dataclass(frozen=True)
class Field:
  default: Any
  check: v.Check
  doc: str = ""
  resumable: bool = False   # may differ when training resumes into an existing workdir
  # eval/predict/explain accept --config.FIELD=VALUE for it: True in all three, or the modes.
  inference: Union[bool, Tuple[str, ...]] = False

  def parse(self, text: str):
    """Command-line text -> a checked value (ValueError names the problem)."""
    value = v.parse_text(text, self.default)
    problem = self.check(value)
    if problem:
      raise ValueError(problem)
    return value


F = Field
_NUMBER = v.number_in(0.0, 1e6)

FIELDS: Dict[str, Field] = {
    "seed": F(0, v.int_at_least(0), "everything random (init, split, order, augmentation)"),
    # data: where scans come from and how they become network inputs
    "data.source": F("synthetic", v.one_of(SOURCES), "'synthetic' (built-in phantom), 'duke' "
                     "(.npz/.mat in data.duke_dir) or 'folder' (images/*.png + masks/*.png)"),
    # Where the data lives, not what the model is: resume and eval may point elsewhere (eval
    # still finds the workdir's validation scans by name, split.json); predict and explain
    # read --input instead.
    "data.duke_dir": F("../shared/data/duke_dme_chiu2015", v.text, resumable=True,
                       inference=("eval",)),
    "data.folder_dir": F("", v.text, resumable=True, inference=("eval",)),
    "data.subjects": F((), v.int_tuple(0, 10_000, 0), "Duke subjects to load; () = all"),
    "data.grader": F(1, v.one_of((1, 2)), "for original Subject_XX.mat files"),
    "data.synthetic.num_scans": F(64, v.int_at_least(2)),
    "data.synthetic.height": F(496, v.int_at_least(32)),
    "data.synthetic.width": F(512, v.int_at_least(32)),
    "data.synthetic.seed": F(0, v.int_at_least(0)),
    "data.synthetic.cysts": F(True, v.flag, "dark fluid ellipses in INL/OPL (a fluid key)"),
    "data.synthetic.scans_per_subject": F(8, v.int_at_least(1)),
    "data.recipe.band_height": F(BAND_HEIGHT, v.int_at_least(0),
                                 "rows kept around the retina; 0 = all"),
    "data.recipe.resize_to": F((), v.resize_to, "(rows, cols), or () for native resolution"),
    "data.recipe.normalisation": F(NORMALISATIONS[0], v.one_of(NORMALISATIONS),
                                   "'percentile' (gain invariant) or 'divide255' (paper)"),
    "data.split": F("subject", v.one_of(SPLITS), "'subject' (val_subjects or fold of "
                    "num_folds), 'random' (val_fraction of B-scans; leaks an eye's scans) or "
                    "'all' (validation = the training scans: fit, not generalisation)"),
    "data.val_subjects": F((), v.int_tuple(0, 10_000, 0), "() = fold `fold` of `num_folds`"),
    "data.num_folds": F(4, v.int_at_least(2)),
    "data.fold": F(0, v.int_at_least(0)),
    "data.val_fraction": F(0.2, v.number_in(0.0, 1.0, open_low=True), "split='random' only"),
    "data.augment.flip": F(True, v.flag),
    "data.augment.max_shift": F(8, v.int_at_least(0), "rows/columns"),
    "data.augment.intensity": F(True, v.flag),
    "data.augment.crop_width": F(0, v.int_at_least(0), "train on random column crops of this "
                                 "width (a multiple of 2 ** len(widths)); 0 = full width"),
    "data.augment.speckle": F(0.0, v.number_in(0.0, 10.0), "log-sd of multiplicative noise"),
    "data.augment.column_shift": F(0, v.int_at_least(0), "smooth per-column vertical warp (rows)"),
    "data.augment.shadows": F(0, v.int_at_least(0), "simulated vessel shadows per scan: dark "
                              "column bands from the ILM down (labels unchanged); 0 = off"),
    "data.augment.row_scale": F(0.0, v.number_in(0.0, 0.5), "stretch each scan's rows by a "
                                "factor uniform in 1 +- row_scale about the middle row (layer "
                                "thickness varies between eyes); 0 = off"),
    "data.pixel_um": F(SPECTRALIS_ROW_UM, v.number_in(0.0, 1e6, open_low=True),
                       "axial pixel size (Duke Spectralis) of inputs without their own scale"),
    "data.max_image_side": F(MAX_IMAGE_SIDE, v.int_at_least(8), "larger scans are refused (memory)",
                             inference=True),
    # model
    "model.name": F("segnet", v.one_of(tuple(MODELS))),
    "model.widths": F((64, 128, 256, 512, 512), v.int_tuple(1, 12, 1), "one per pooling level"),
    "model.num_classes": F(NUM_CLASSES, v.one_of((NUM_CLASSES,))),
    "model.convs_per_block": F(2, v.int_at_least(1)),
    "model.use_batchnorm": F(True, v.flag),
    "model.upsample": F("unpool", v.one_of(UPSAMPLING)),
    "model.skip": F(False, v.flag, "concatenate encoder features in the decoder"),
    "model.kernel": F((3, 3), v.int_tuple(2, 2, 1), "(rows, cols) of the conv blocks; "
                      "ReLayNet: (7, 3)"),
    "model.position_channel": F(False, v.flag, "row / height as a second input (LF-UNet)"),
    "model.fluid_head": F(False, v.flag, "a fluid sigmoid channel from the last decoder features"),
    "model.boundary_head": F(False, v.flag, "per column and boundary an ordered soft-argmax "
                             "over rows (He et al. 2019)"),
    "model.boundary_head_convs": F(0, v.int_at_least(0), "boundary head: its own conv blocks "
                                   "on the last decoder features (0: the 1x1 conv shares them)"),
    "model.boundary_window": F(0, v.int_at_least(0), "boundary head: soft-argmax over the rows "
                               "within this many of each column's peak (0: all rows)"),
    # loss
    "loss.name": F("hybrid", v.one_of(tuple(sorted(LOSSES))), "'hybrid' = CE + dice_weight * "
                   "(1 - Dice) (paper), 'ce', 'weighted_hybrid' (ReLayNet-weighted CE + Dice)"),
    "loss.dice_weight": F(DICE_WEIGHT, _NUMBER),
    "loss.dice_mode": F("global", v.one_of(DICE_MODES), "'global' (paper) or 'class_mean'"),
    "loss.boundary_weight": F(BOUNDARY_WEIGHT, _NUMBER,
                              "weighted_hybrid: extra CE weight at boundaries"),
    "loss.layer_weight": F(LAYER_WEIGHT, _NUMBER, "weighted_hybrid: extra CE weight on layer "
                           "pixels"),
    "loss.fluid_weight": F(1.0, _NUMBER, "fluid head: x (BCE + 1 - soft Dice)"),
    "loss.fluid_column_weight": F(0.0, _NUMBER, "weighted_hybrid with the fluid head: extra CE "
                                  "weight on every layer pixel of a column with marked fluid"),
    "loss.boundary_head_weight": F(0.1, _NUMBER, "boundary head: x (smooth-L1 + row NLL)"),
    "loss.depth_weight": F(0.0, _NUMBER, "x smooth-L1 (px) of each boundary's depth below the "
                           "ILM from the pixel head's soft layer thicknesses; 0 = off"),
    "loss.boundary_target_sigma": F(0.0, v.number_in(0.0, 1e3), "boundary head: the row NLL's "
                                    "target is a Gaussian of this sd (rows) around the true "
                                    "row (0: the true row alone)"),
    # train
    "train.batch_size": F(32, v.int_at_least(1)),
    "train.eval_batch_size": F(16, v.int_at_least(1), resumable=True, inference=True),
    "train.num_epochs": F(100, v.int_at_least(1), resumable=True),
    "train.optimizer": F("adam", v.one_of(OPTIMIZERS), "'adam' (paper), 'adamw', 'sgd'"),
    "train.learning_rate": F(1e-3, v.number_in(0.0, 1e3, open_low=True)),
    "train.weight_decay": F(0.0, v.number_in(0.0, 1e3), "adamw only"),
    "train.momentum": F(0.9, v.number_in(0.0, 1.0), "sgd only"),
    "train.schedule": F("plateau", v.one_of(SCHEDULES), "'plateau' (paper, per epoch on the "
                        "validation loss), 'cosine' (per step, warm-up) or 'constant'"),
    "train.warmup_epochs": F(0, v.int_at_least(0), "cosine only"),
    "train.plateau_factor": F(0.5, v.number_in(0.0, 1.0, open_low=True)),
    "train.plateau_patience": F(5, v.int_at_least(0)),
    "train.early_stopping_patience": F(15, v.int_at_least(0), resumable=True),
    "train.min_delta": F(1e-4, _NUMBER),
    "train.ema_decay": F(0.0, v.number_in(0.0, 0.9999), "validate and keep a moving average "
                         "of the weights, this decay per step once its warm-up "
                         "min(decay, (1 + step) / (10 + step)) reaches it; 0 = off"),
    "train.compute_dtype": F("float32", v.one_of(COMPUTE_DTYPES),
                             "bfloat16 = mixed precision (parameters and loss in float32)"),
    "train.checkpoint_every": F(1, v.int_at_least(1), "epochs between resumable checkpoints",
                                resumable=True),
    "train.num_devices": F(0, v.int_at_least(0), "0 = all local devices", resumable=True),
    "train.image_summary_every": F(5, v.int_at_least(0), "epochs between TensorBoard image "
                                   "summaries; 0 = none", resumable=True),
    # explain: the default method and layer were chosen on held-out eyes (docs/results.md 3.5)
    "explain.layers": F(("dec3_conv1",), v.names, "network layers to explain at; "
                        "gradcam at dec0_conv1,head = the paper's Table 3", True, True),
    "explain.method": F("hirescam", v.one_of(CAM_METHODS), "", True, True),
    "explain.target": F("all", v.one_of(CAM_TARGETS), "pixel set M", True, True),
    "explain.box": F((), v.box, "(row0, col0, row1, col1) in raw scan pixels", True, True),
    "explain.deletion_steps": F(10, v.int_at_least(1), "fractions 0.1 .. 1.0", True, True),
    "explain.road_steps": F(5, v.int_at_least(1), "ROAD fractions 0.18 .. 0.9", True, True),
    "explain.road_noise": F(ROAD_NOISE, v.number_in(0.0, 1.0, open_low=True),
                            "sd of ROAD's imputation noise (model-input intensity)", True, True),
    "explain.removal_batch_mb": F(1024, v.int_at_least(1), "memory for one batch of perturbed "
                                  "images (and of Ablation-CAM's ablated channels)", True,
                                  ("explain",)),
    "explain.max_scans": F(4, v.int_at_least(1), "scans per input file", True, True),
    "explain.scan_indices": F((), v.positions, "the scans to explain in each "
                              "file, by position from 0 (predict's scan_index); () = the first "
                              "max_scans", True, ("explain",)),
    # predict
    "predict.members": F(0, v.int_at_least(0), "of an ensemble: the first N (0 = all; 1 = the "
                         "first member without flip views)", True, True),
    "predict.smooth_sd_columns": F(0.0, v.number_in(0.0, 100.0), "the ordered labels, boundaries"
                                   " and thickness smoothed along the B-scan by a Gaussian of this "
                                   "sd in columns (A-scans, not um; pretrained/'s 6 was chosen on "
                                   "Duke's 11.33 um columns); 0 = off", True, ("eval", "predict")),
    "predict.uncertain_um": F(2 * SPECTRALIS_ROW_UM, _NUMBER, "an ensemble's column is "
                              "'uncertain' where some boundary's spread (the members' sd) "
                              "exceeds this (2 Duke axial pixels); 0 = flag by the position sd "
                              "(predict.uncertain_position_sd_um) instead", True, True),
    "predict.uncertain_position_sd_um": F(0.0, _NUMBER, "a single model's column (an "
                                          "ensemble's where predict.uncertain_um is 0) is "
                                          "'uncertain' where some boundary's position sd exceeds "
                                          "this; 0 = no such flag", True, True),
    # benchmark
    "benchmark.steps": F(5, v.int_at_least(1), resumable=True),
    "benchmark.warmup": F(2, v.int_at_least(0), resumable=True),
    "benchmark.batch_size": F(0, v.int_at_least(0), "0 = train.batch_size", resumable=True),
    "benchmark.explain": F(True, v.flag, resumable=True),
}


def default_config() -> ml_collections.ConfigDict:
  """Every field at its default, as a nested ConfigDict."""
  return ml_collections.ConfigDict(unflatten({k: f.default for k, f in FIELDS.items()}))


def choices(dotted: str) -> Tuple:
  """The valid values of a choice field (command-line flags offer them)."""
  return FIELDS[dotted].check.choices


def resumable_fields() -> Tuple[str, ...]:
  return tuple(k for k, f in FIELDS.items() if f.resumable)


def resumable_summary() -> str:
  """The resumable fields in words; a section whose fields all are is written 'section.*'."""
  sections = {}
  for dotted, field in FIELDS.items():
    sections.setdefault(dotted.rsplit(".", 1)[0], []).append((dotted, field.resumable))
  out = []
  for section, fields in sections.items():
    if all(r for _, r in fields) and "." in fields[0][0]:
      out.append(f"{section}.*")
    else:
      out += [d for d, r in fields if r]
  return ", ".join(out)


def inference_fields(mode: Optional[str] = None) -> Tuple[str, ...]:
  """The fields that --mode=MODE may set (that any inference mode may set, for None)."""
  return tuple(k for k, f in FIELDS.items() if f.inference is True
               or (f.inference and (mode is None or mode in f.inference)))


def no_such_field(name: str) -> str:
  """The one-line problem of `--config.NAME` when NAME is not a field, with the closest one."""
  import difflib
  close = difflib.get_close_matches(name, list(FIELDS), n=1)
  return f"--config.{name}: no such field" + (f"; did you mean --config.{close[0]}?" if close
                                              else "")

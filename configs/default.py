"""All fields with their defaults. Other configs start from this one and change what differs.

Fields:
  seed: everything random (init, split, data order, augmentation) derives from it.
  data.source: 'synthetic' (built-in phantom, no download), 'duke' (Duke DME .npz or .mat
    files in data.duke_dir) or 'folder' (data.folder_dir/images/*.png + masks/*.png).
  data.max_image_side: scans with more rows or columns than this are refused (memory).
  data.recipe: band_height rows kept around the retina (0 = all); resize_to (h, w) or () for
    native resolution; normalisation 'percentile' (gain invariant) or 'divide255' (paper).
  data.split: 'subject' (val_subjects, or fold `fold` of `num_folds` over subjects) or
    'random' (val_fraction of the B-scans, the paper's split; leaks neighbouring scans of an eye).
  data.augment: flip, max_shift (rows/columns), intensity jitter; optional (0 = off):
    crop_width (train on random column crops of that width, a multiple of 2 ** len(widths);
    validation and inference stay full width), column_shift (smooth per-column vertical warp
    of up to that many rows), speckle (log-sd of multiplicative noise).
  model: SegNet widths (one per pooling level), upsample 'unpool' or 'transpose', skip,
    kernel (rows, cols) of the conv blocks (ReLayNet: (7, 3)), position_channel (row / height
    as a second input channel, as in LF-UNet); fluid_head (a sigmoid fluid channel from the
    last decoder features; trained on the data's fluid masks) and boundary_head (per column
    and boundary a softmax over rows whose expectation is the boundary row, ordered by
    construction; He et al. 2019), both off by default.
  loss: by name (octseg_jax/learning/losses.py LOSSES): 'hybrid' = CE + dice_weight * (1 - Dice)
    (the paper's), 'ce', 'weighted_hybrid' (ReLayNet-style CE weighted by 1 + boundary_weight
    at layer boundaries + layer_weight on layer pixels, + the Dice term); dice_mode 'global'
    (paper) or 'class_mean'. With the heads: + fluid_weight * (BCE + 1 - soft Dice) of the
    fluid channel, + boundary_head_weight * (smooth-L1 in pixels + row NLL) of the boundaries.
  train: optimizer 'adam' (paper), 'adamw' (weight_decay) or 'sgd' (momentum); schedule
    'plateau' (paper: factor/patience on the validation loss once per epoch), 'cosine'
    (warm-up over warmup_epochs then cosine decay to 0 at num_epochs, per step) or 'constant';
    early stopping on the validation loss; compute_dtype 'float32' or 'bfloat16' (mixed
    precision; parameters and loss in float32).
  Which fields may change when a workdir is resumed: octseg_jax/serving/workdir.py RESUMABLE_FIELDS.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.data = data_section()
  c.model = model_section()
  c.loss = ml_collections.ConfigDict(dict(
      name="hybrid", dice_weight=0.5, dice_mode="global", boundary_weight=10.0,
      layer_weight=5.0, fluid_weight=1.0, boundary_head_weight=0.1))
  c.train = train_section()
  c.explain = explain_section()
  c.predict = ml_collections.ConfigDict()
  c.predict.members = 0                # of an ensemble workdir: use the first N (0 = all;
                                       # 1 = the first member alone, without flip views)
  c.predict.uncertain_um = 7.74        # a column is 'uncertain' where the members' spread (sd)
                                       # of some boundary exceeds this (2 Duke axial pixels)
  c.benchmark = ml_collections.ConfigDict(dict(steps=5, warmup=2, batch_size=0, explain=True))
  return c


def data_section() -> ml_collections.ConfigDict:
  d = ml_collections.ConfigDict()
  d.source = "synthetic"
  d.duke_dir = "../shared/data/duke_dme_chiu2015"
  d.folder_dir = ""
  d.subjects = ()                      # Duke subjects to load; () = all files in duke_dir
  d.grader = 1                         # for original Subject_XX.mat files
  d.synthetic = ml_collections.ConfigDict(dict(
      num_scans=64, height=496, width=512, seed=0, cysts=True, scans_per_subject=8))
  d.recipe = ml_collections.ConfigDict(dict(
      band_height=224, resize_to=(), normalisation="percentile"))
  d.split = "subject"
  d.val_subjects = ()                  # () = use fold `fold` of `num_folds`
  d.num_folds = 4
  d.fold = 0
  d.val_fraction = 0.2                 # for split='random'
  d.augment = ml_collections.ConfigDict(dict(
      flip=True, max_shift=8, intensity=True, crop_width=0, speckle=0.0, column_shift=0))
  d.pixel_um = 3.87                    # axial pixel size (Duke Spectralis)
  d.max_image_side = 4096              # images with more rows or columns are refused
  return d


def model_section() -> ml_collections.ConfigDict:
  m = ml_collections.ConfigDict()
  m.name = "segnet"
  m.widths = (64, 128, 256, 512, 512)
  m.num_classes = 8
  m.convs_per_block = 2
  m.use_batchnorm = True
  m.upsample = "unpool"
  m.skip = False
  m.kernel = (3, 3)                    # (rows, cols) of the conv blocks
  m.position_channel = False
  m.fluid_head = False                 # a fluid sigmoid channel (multi-task, issue 26)
  m.boundary_head = False              # ordered soft-argmax boundary rows per column
  return m


def train_section() -> ml_collections.ConfigDict:
  t = ml_collections.ConfigDict()
  t.batch_size = 32
  t.eval_batch_size = 16
  t.num_epochs = 100
  t.optimizer = "adam"
  t.learning_rate = 1e-3
  t.weight_decay = 0.0                 # adamw only
  t.momentum = 0.9                     # sgd only
  t.schedule = "plateau"
  t.warmup_epochs = 0                  # cosine only
  t.plateau_factor = 0.5
  t.plateau_patience = 5
  t.early_stopping_patience = 15
  t.min_delta = 1e-4
  t.compute_dtype = "float32"
  t.checkpoint_every = 1               # epochs between resumable checkpoints
  t.num_devices = 0                    # 0 = all local devices (data parallel)
  t.image_summary_every = 5            # epochs between TensorBoard image summaries (0 = none)
  return t


def explain_section() -> ml_collections.ConfigDict:
  e = ml_collections.ConfigDict()
  # Default layer chosen on Duke scans by ROAD faithfulness, the randomisation check and cost
  # (docs/results.md section 3); --cam_layers=dec0_conv1,head gives the paper's Table 3.
  e.layers = ("dec0_conv1",)
  e.method = "gradcam"                 # 'gradcam', 'hirescam', 'gradcampp' or 'ablation'
  e.target = "all"                     # 'all', 'predicted' or 'box'
  e.box = ()                           # (row0, col0, row1, col1) in raw scan pixels
  e.deletion_steps = 10                # deletion fractions 0.1 .. 1.0 (--cam_faithfulness)
  e.road_steps = 5                     # ROAD fractions 0.18 .. 0.9 (--cam_faithfulness=road)
  e.road_noise = 0.01                  # sd of ROAD's imputation noise (model-input intensity)
  e.removal_batch_mb = 1024            # memory for one batch of perturbed images
  e.max_scans = 4                      # scans per input file to explain
  return e

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
  loss: by name (octseg_jax/losses.py LOSSES): 'hybrid' = CE + dice_weight * (1 - Dice)
    (the paper's), 'ce', 'weighted_hybrid' (ReLayNet-style CE weighted by 1 + boundary_weight
    at layer boundaries + layer_weight on layer pixels, + the Dice term); dice_mode 'global'
    (paper) or 'class_mean'. With the heads: + fluid_weight * (BCE + 1 - soft Dice) of the
    fluid channel, + boundary_head_weight * (smooth-L1 in pixels + row NLL) of the boundaries.
  train: optimizer 'adam' (paper), 'adamw' (weight_decay) or 'sgd' (momentum); schedule
    'plateau' (paper: factor/patience on the validation loss once per epoch), 'cosine'
    (warm-up over warmup_epochs then cosine decay to 0 at num_epochs, per step) or 'constant';
    early stopping on the validation loss; compute_dtype 'float32' or 'bfloat16' (mixed
    precision; parameters and loss in float32).
  Which fields may change when a workdir is resumed: octseg_jax/workdir.py RESUMABLE_FIELDS.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.data = ml_collections.ConfigDict()
  c.data.source = "synthetic"
  c.data.duke_dir = "../shared/data/duke_dme_chiu2015"
  c.data.folder_dir = ""
  c.data.subjects = ()                 # Duke subjects to load; () = all files in duke_dir
  c.data.grader = 1                    # for original Subject_XX.mat files
  c.data.synthetic = ml_collections.ConfigDict(dict(
      num_scans=64, height=496, width=512, seed=0, cysts=True, scans_per_subject=8))
  c.data.recipe = ml_collections.ConfigDict(dict(
      band_height=224, resize_to=(), normalisation="percentile"))
  c.data.split = "subject"
  c.data.val_subjects = ()             # () = use fold `fold` of `num_folds`
  c.data.num_folds = 4
  c.data.fold = 0
  c.data.val_fraction = 0.2            # for split='random'
  c.data.augment = ml_collections.ConfigDict(dict(
      flip=True, max_shift=8, intensity=True, crop_width=0, speckle=0.0, column_shift=0))
  c.data.pixel_um = 3.87               # axial pixel size (Duke Spectralis)
  c.data.max_image_side = 4096         # images with more rows or columns are refused

  c.model = ml_collections.ConfigDict()
  c.model.name = "segnet"
  c.model.widths = (64, 128, 256, 512, 512)
  c.model.num_classes = 8
  c.model.convs_per_block = 2
  c.model.use_batchnorm = True
  c.model.upsample = "unpool"
  c.model.skip = False
  c.model.kernel = (3, 3)              # (rows, cols) of the conv blocks
  c.model.position_channel = False
  c.model.fluid_head = False           # a fluid sigmoid channel (multi-task, issue 26)
  c.model.boundary_head = False        # ordered soft-argmax boundary rows per column

  c.loss = ml_collections.ConfigDict(dict(
      name="hybrid", dice_weight=0.5, dice_mode="global", boundary_weight=10.0,
      layer_weight=5.0, fluid_weight=1.0, boundary_head_weight=0.1))

  c.train = ml_collections.ConfigDict()
  c.train.batch_size = 32
  c.train.eval_batch_size = 16
  c.train.num_epochs = 100
  c.train.optimizer = "adam"
  c.train.learning_rate = 1e-3
  c.train.weight_decay = 0.0           # adamw only
  c.train.momentum = 0.9               # sgd only
  c.train.schedule = "plateau"
  c.train.warmup_epochs = 0            # cosine only
  c.train.plateau_factor = 0.5
  c.train.plateau_patience = 5
  c.train.early_stopping_patience = 15
  c.train.min_delta = 1e-4
  c.train.compute_dtype = "float32"
  c.train.checkpoint_every = 1         # epochs between resumable checkpoints
  c.train.num_devices = 0              # 0 = all local devices (data parallel)
  c.train.image_summary_every = 5      # epochs between TensorBoard image summaries (0 = none)

  c.explain = ml_collections.ConfigDict()
  # Default layer chosen on Duke scans by ROAD faithfulness, the randomisation check and cost
  # (docs/results.md section 3); --cam_layers=dec0_conv1,head gives the paper's Table 3.
  c.explain.layers = ("dec0_conv1",)
  c.explain.method = "gradcam"         # 'gradcam', 'hirescam', 'gradcampp' or 'ablation'
  c.explain.target = "all"             # 'all', 'predicted' or 'box'
  c.explain.box = ()                   # (row0, col0, row1, col1) in raw scan pixels
  c.explain.deletion_steps = 10        # deletion fractions 0.1 .. 1.0 (--cam_faithfulness)
  c.explain.road_steps = 5             # ROAD fractions 0.18 .. 0.9 (--cam_faithfulness=road)
  c.explain.road_noise = 0.01          # sd of ROAD's imputation noise (model-input intensity)
  c.explain.removal_batch_mb = 1024    # memory for one batch of perturbed images
  c.explain.max_scans = 4              # scans per input file to explain

  c.predict = ml_collections.ConfigDict()
  c.predict.members = 0                # of an ensemble workdir: use the first N (0 = all;
                                       # 1 = the first member alone, without flip views)
  c.predict.uncertain_um = 7.74        # a column is 'uncertain' where the members' spread (sd)
                                       # of some boundary exceeds this (2 Duke axial pixels)

  c.benchmark = ml_collections.ConfigDict(dict(steps=5, warmup=2, batch_size=0, explain=True))
  return c

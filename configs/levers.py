"""Issue 13's levers as one-change overrides of a base recipe (configs/duke_cpu_fast.py on a
CPU, configs/duke_gpu.py on a GPU), in the issue's order of expected value.
scripts/run_experiments.py --plan=levers_cpu / levers_gpu screens each on 2 folds x 2 seeds
and confirms the winners on 4 folds. A lever can also be run by hand, e.g.
`--config.model.kernel='(7,3)'`."""

LEVERS = {
    "class_mean_dice": {"loss.dice_mode": "class_mean"},
    "weighted_hybrid": {"loss.name": "weighted_hybrid"},
    "skip_concat": {"model.skip": True},
    "three_convs": {"model.convs_per_block": 3},
    "kernel_7x3": {"model.kernel": (7, 3)},
    "position_channel": {"model.position_channel": True},
    "adamw": {"train.optimizer": "adamw", "train.weight_decay": 1e-4},
    "strong_augment": {"data.augment.speckle": 0.2, "data.augment.column_shift": 8},
}

SCREEN_FOLDS = (0, 1)
SCREEN_SEEDS = (0, 1)
CONFIRM_FOLDS = (0, 1, 2, 3)      # seed 0

"""One-change variants of our Duke configuration (configs/duke_gpu.py or duke_cpu.py), as
config overrides; scripts/run_experiments.py trains them and summarise_results.py tabulates
them. A variant can also be run by hand, e.g. `--config.model.upsample=transpose`."""

ABLATIONS = {
    "transpose_upsampling": {"model.upsample": "transpose"},
    "skip_concat": {"model.skip": True},
    "ce_only": {"loss.dice_weight": 0.0},
    "resize_256": {"data.recipe.band_height": 216, "data.recipe.resize_to": (256, 256)},
}

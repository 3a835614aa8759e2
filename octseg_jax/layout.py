"""The files and folders of a training workdir: the one home of their names. It imports
nothing, so the scripts that avoid JAX (the campaign runner) name them from here too."""

CONFIG_FILE = "config.json"                  # the resolved config
SPLIT_FILE = "split.json"                    # the split: subjects, scan names, model input shape
LOG_FILE = "log.csv"                         # one row per epoch (training/hooks.py MetricsLog)
PROVENANCE_FILE = "provenance.json"          # what ran, where, with what, for how long
BEST_METRICS_FILE = "best_val_metrics.json"  # the kept checkpoint's validation metrics
CURVES_FILE = "training_curves.png"          # the paper's Figure 3, drawn when training ends
TENSORBOARD_DIR = "tensorboard"              # scalars, images and the config as text
CHECKPOINT_DIR = "checkpoints"               # the latest checkpoints: where training resumes
BEST_DIR = "best"                            # the kept checkpoint: what eval, predict, explain load

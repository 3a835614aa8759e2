"""The retina as the data and the paper name it: classes, boundaries, label codes, and the
paper's published numbers. The one home of these constants."""

NUM_CLASSES = 8              # background + 7 retinal layers (Duke DME labels 0..7)
LAYER_NAMES = ("background", "NFL", "GCL+IPL", "INL", "OPL", "ONL+ISM", "ISE", "OS-RPE")
NUM_LAYERS = 7               # the retinal layer classes 1..7
BOUNDARY_NAMES = ("ILM", "NFL/GCL", "IPL/INL", "INL/OPL", "OPL/ONL", "ISM/ISE", "OS/RPE", "BM")
NUM_BOUNDARIES = 8           # the tops of layers 1..7 and the bottom of layer 7

IGNORE = 255                 # mask value of unlabelled pixels: never counted in loss or metrics
FLUID_CODE = 16              # label 16 + k: fluid inside layer k (training labels carry fluid)
FLUID_UNKNOWN_LAYER = 254    # fluid where the grader gave no layer
FLUID_THRESHOLD = 0.5        # a pixel is called fluid where the fluid head's probability
                             # exceeds this: predict's mask, eval's fluid Dice, the loss's counts

# Enhanced SegNet (2025), Duke DME, random B-scan split.
PAPER_IOU = (0.99, 0.82, 0.86, 0.71, 0.68, 0.90, 0.82, 0.78)        # per class, Table 2
PAPER = {"accuracy": 0.9577, "dice": 0.9446, "iou": 0.8951}          # overall, Table 1

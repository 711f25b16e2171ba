# YOLOX-nano with no attention (the baseline) on the generated shapes dataset (make it first:
# python -m yolox_attn.tools.make_shapes --out datasets/shapes).
import os

from yolox_attn.shapes_exp import NanoShapesExp


class Exp(NanoShapesExp):
    def __init__(self):
        super().__init__()
        self.attention = "none"
        self.exp_name = os.path.split(os.path.realpath(__file__))[1].split(".")[0]

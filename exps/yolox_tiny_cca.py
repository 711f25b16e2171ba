# YOLOX-tiny with Criss-Cross Attention (R=2) on dark3/dark4/dark5.
import os

from yolox_attn.exp import AttentionExp


class Exp(AttentionExp):
    def __init__(self):
        super().__init__()
        self.depth = 0.33
        self.width = 0.375
        self.input_size = (416, 416)
        self.mosaic_scale = (0.5, 1.5)
        self.random_size = (10, 20)
        self.test_size = (416, 416)
        self.enable_mixup = False
        self.attention = "cca"
        self.exp_name = os.path.split(os.path.realpath(__file__))[1].split(".")[0]

# YOLOX-x (YOLOX's own x settings) with ACmix on dark3/dark4/dark5.
import os

from yolox_attn.exp import AttentionExp


class Exp(AttentionExp):
    def __init__(self):
        super().__init__()
        self.use_yolox_size("x")
        self.attention = "acmix"
        self.exp_name = os.path.split(os.path.realpath(__file__))[1].split(".")[0]

# YOLOX-s on Pascal VOC (YOLOX's VOC exp settings) with Coordinate Attention on dark3/dark4/dark5.
# data_dir: the folder holding VOC2007/ (and VOC2012/): $YOLOX_DATADIR/VOCdevkit, else datasets/VOCdevkit.
# VOC2007 alone: train_image_sets "(('2007', 'trainval'),)". Other classes: class_names and num_classes.
import os

from yolox_attn.voc import VOCAttentionExp


class Exp(VOCAttentionExp):
    def __init__(self):
        super().__init__()
        self.attention = "ca"
        self.exp_name = os.path.split(os.path.realpath(__file__))[1].split(".")[0]

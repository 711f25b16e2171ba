"""Pictures of what a model sees: its detections and its attention maps (the demo tool's library).

``predictor``: YOLOX's demo predictor and the model it runs; ``attention_maps``: per-pixel maps of
each attention module; ``figure``: the panels of the attention picture; ``image_demo``: one
folder of images through all of these, pictures saved.
"""

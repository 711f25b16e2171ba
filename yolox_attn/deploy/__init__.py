"""Running exported models where torch is not: what an exported file says about itself
(``metadata``), the runtimes that run ONNX files (``runtime``: onnxruntime, OpenVINO), and
YOLOX's pre- and post-processing in numpy (``detect``). None of these modules imports torch;
``torch_bridge`` wraps a runtime as a torch module for YOLOX's evaluator.
"""

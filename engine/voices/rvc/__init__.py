"""RVC (Retrieval-based Voice Conversion) v1/v2 models: synthesizer, .pth and .onnx loading, export.

Heavy imports (torch, onnxruntime) happen in the submodules, not here.
"""

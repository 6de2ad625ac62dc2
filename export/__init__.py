"""Model export: PyTorch -> ONNX with parity checks, and Triton model repositories generated from one spec.

Only `core.specs` is imported by the serving path; everything else here imports torch lazily.
"""

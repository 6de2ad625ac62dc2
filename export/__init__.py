"""Model export: PyTorch -> ONNX with parity checks, and Triton model repositories generated from one spec.

    targets.py         the model repository's targets and the ONNX precisions
    onnx.py            the bi-encoder to ONNX (and the tracing and tensor checks every model uses)
    multilingual.py    the multilingual encoder to ONNX
    reranker/          the cross-encoder in three precisions, each held to an accuracy gate (its steps, a module each)
    tensorrt.py        TensorRT engines, built on the GPU host that serves them
    validate.py        parity with the reference model
    triton_config.py   config.pbtxt from the spec
    stamps.py          what an export depends on, which decides whether it is current
    repository.py      the one writer of a model version: folder, files, manifest, config
    encoders.py        the sentence encoders into the repository
    errors.py          ExportError and ParityError

Only `core.specs` is imported by the serving path; everything else here imports torch lazily.
"""

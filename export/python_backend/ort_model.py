"""Triton Python-backend model that runs an ONNX file with ONNX Runtime: the CPU stand-in for `onnxruntime_onnx`.

Copied as `<model>/<version>/model.py` beside `model.onnx` by `shoprank export --target cpu`. Triton's
onnxruntime backend exists only in NVIDIA's container; this keeps the same model name and tensors.

Dynamic batching hands `execute` several requests at once. Their inputs are padded with zeros to the longest
sequence among them, stacked into one batch, run once, and the outputs split back per request. Zero padding
is right for token ids ([PAD] = 0) and attention masks; the outputs must not have a sequence axis.
"""

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.input_names = [tensor["name"] for tensor in config["input"]]
        self.output_names = [tensor["name"] for tensor in config["output"]]
        parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(parameters.get("intra_op_threads", "0"))  # 0: one per core
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        path = os.path.join(args["model_repository"], args["model_version"], parameters.get("onnx_file", "model.onnx"))
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        # "false": run each request of a dynamic batch on its own (dynamically quantized models take their
        # activation ranges from the batch, so merged requests would change each other's outputs).
        self.merge_requests = parameters.get("merge_requests", "true") != "false"

    def execute(self, requests):
        if not self.merge_requests and len(requests) > 1:
            return [response for request in requests for response in self._execute([request])]
        return self._execute(requests)

    def _execute(self, requests):
        try:
            batches = [
                [pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in self.input_names]
                for request in requests
            ]
            sizes = [arrays[0].shape[0] for arrays in batches]
            feeds = {}
            for position, name in enumerate(self.input_names):
                parts = [arrays[position] for arrays in batches]
                longest = max(part.shape[1] for part in parts) if parts[0].ndim > 1 else None
                if longest is not None:
                    parts = [np.pad(part, ((0, 0), (0, longest - part.shape[1]))) for part in parts]
                feeds[name] = np.concatenate(parts, axis=0)
            outputs = self.session.run(self.output_names, feeds)
        except Exception as error:  # every request of the batch gets the error; the model keeps serving
            return [pb_utils.InferenceResponse(error=pb_utils.TritonError(str(error))) for _ in requests]
        responses = []
        start = 0
        for size in sizes:
            tensors = [pb_utils.Tensor(name, output[start : start + size]) for name, output in zip(self.output_names, outputs)]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start += size
        return responses

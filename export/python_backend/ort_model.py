"""Triton Python-backend model that runs an ONNX file with ONNX Runtime: the CPU stand-in for `onnxruntime_onnx`.

Copied as `<model>/<version>/model.py` beside `model.onnx` by `shoprank export --target cpu`. Triton's
onnxruntime backend exists only in NVIDIA's container; this keeps the same model name and tensors.

Dynamic batching hands `execute` several requests at once. Their inputs are padded with zeros to the longest
sequence among them, stacked into one batch, run (in length groups where `length_group_rows` is set), and
the outputs split back per request. Zero padding is right for token ids ([PAD] = 0) and attention masks;
the outputs must not have a sequence axis.
"""

import json
import os

import numpy as np
import onnxruntime as ort

try:
    import triton_python_backend_utils as pb_utils
except ImportError:  # imported outside Triton, for run_by_length (export/reranker.py's gate, unit tests)
    pb_utils = None


def run_by_length(run, feeds, group_rows):
    """`run(feeds)` -> list of outputs, with the rows sorted by length (attention_mask) and run in groups of
    about `group_rows`, each group cut to its longest row; outputs come back in the rows' order.

    Padding is on the right, so cutting columns past a group's longest row drops only padding. Without an
    attention_mask, or with group_rows 0, the batch runs as it came.
    """
    mask = feeds.get("attention_mask")
    if not group_rows or mask is None or mask.ndim != 2 or len(mask) == 0:
        return run(feeds)
    lengths = mask.sum(axis=1)
    order = np.argsort(lengths, kind="stable")
    groups = np.array_split(order, -(-len(order) // group_rows))
    results = []
    for rows in groups:
        longest = max(int(lengths[rows].max()), 1)
        if mask[rows, longest:].any():  # not right-padded: keep every column
            longest = mask.shape[1]
        results.append(run({name: array[rows][:, :longest] if array.ndim == 2 else array[rows]
                            for name, array in feeds.items()}))
    outputs = []
    for position in range(len(results[0])):
        stacked = np.concatenate([result[position] for result in results], axis=0)
        restored = np.empty_like(stacked)
        restored[order] = stacked
        outputs.append(restored)
    return outputs


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.input_names = [tensor["name"] for tensor in config["input"]]
        self.output_names = [tensor["name"] for tensor in config["output"]]
        parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(parameters.get("intra_op_threads", "0"))  # 0: one per core
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle ORT threads sleep instead of spinning: Triton hosts several models (and the orchestrator may
        # share the cores), and a spinning pool steals their CPU between runs.
        options.add_session_config_entry("session.intra_op.allow_spinning", parameters.get("allow_spinning", "0"))
        path = os.path.join(args["model_repository"], args["model_version"], parameters.get("onnx_file", "model.onnx"))
        # ONNX Runtime graph optimizers not to run, comma-separated (core/specs.py: cpu_disabled_optimizers).
        disabled = [name for name in parameters.get("disabled_optimizers", "").split(",") if name]
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"],
                                            disabled_optimizers=disabled)
        # "false": run each request of a dynamic batch on its own (dynamically quantized models take their
        # activation ranges from the batch, so merged requests would change each other's outputs).
        self.merge_requests = parameters.get("merge_requests", "true") != "false"
        self.length_group_rows = int(parameters.get("length_group_rows", "0"))

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
            outputs = run_by_length(lambda part: self.session.run(self.output_names, part), feeds, self.length_group_rows)
        except Exception as error:  # every request of the batch gets the error; the model keeps serving
            return [pb_utils.InferenceResponse(error=pb_utils.TritonError(str(error))) for _ in requests]
        responses = []
        start = 0
        for size in sizes:
            tensors = [pb_utils.Tensor(name, output[start : start + size]) for name, output in zip(self.output_names, outputs)]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start += size
        return responses

"""The only module that talks to Triton. Every tritonclient exception is caught here and becomes a TritonError."""

from __future__ import annotations

import asyncio

import numpy as np
import tritonclient.grpc.aio as triton_aio
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.utils import InferenceServerException

from core.errors import DeadlineMissed, TritonError, TritonUnavailable

from .deadline import remaining
from core.specs import ModelSpec


# tritonclient's own channel options (unbounded messages, keepalive defaults), and a reconnect backoff of at most
# 1 s: gRPC's default grows to 2 minutes, so after Triton restarted the channel could wait that long to try again.
CHANNEL_ARGS = [
    ("grpc.max_send_message_length", 2**31 - 1),
    ("grpc.max_receive_message_length", 2**31 - 1),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


class TritonClient:
    """An asyncio client for one Triton server. Create it inside the event loop that uses it."""

    def __init__(self, url: str, timeout_s: float) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._client = triton_aio.InferenceServerClient(url=url, channel_args=CHANNEL_ARGS)

    async def close(self) -> None:
        await self._client.close()

    async def is_model_ready(self, model: ModelSpec | str, version: str = "") -> bool:
        """True when Triton answers and the model (that version of it, when given) is ready; False when it
        answers otherwise or not at all."""
        name = model if isinstance(model, str) else model.name
        try:
            return bool(await self._client.is_model_ready(name, version, client_timeout=self.timeout_s))
        except InferenceServerException:
            return False

    async def load_model(self, name: str, config_json: str, timeout_s: float) -> None:
        """Load (or reload) a model with the given configuration (JSON of Triton's ModelConfig): Triton loads the
        versions its version policy names that are not loaded yet, keeps the loaded ones that it still names
        serving, and unloads the others once their requests are done. TritonError when the load fails."""
        try:
            await self._client.load_model(name, config=config_json, client_timeout=timeout_s)
        except InferenceServerException as error:
            raise _translate(error, self.url, name) from None

    async def wait_until_live(self, timeout_s: float) -> None:
        """Poll until the server answers (a Triton started alongside takes a while); TritonUnavailable otherwise."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            try:
                if await self._client.is_server_live(client_timeout=self.timeout_s):
                    return
            except InferenceServerException:
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise TritonUnavailable(f"Triton at {self.url} did not answer within {timeout_s:.0f}s; "
                                        "is tritonserver running there?")
            await asyncio.sleep(0.25)

    async def wait_until_ready(self, specs: list[ModelSpec], timeout_s: float) -> None:
        """Poll until every model is ready; raise TritonUnavailable naming the URL and models otherwise."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            ready = [await self.is_model_ready(spec) for spec in specs]
            if all(ready):
                return
            if asyncio.get_running_loop().time() > deadline:
                missing = [spec.name for spec, ok in zip(specs, ready) if not ok]
                raise TritonUnavailable(
                    f"Triton at {self.url} did not report model(s) {', '.join(missing)} ready within {timeout_s:.0f}s; "
                    "is tritonserver running there with this model repository?"
                )
            await asyncio.sleep(0.25)

    async def model_version(self, spec: ModelSpec) -> str:
        """The newest version of the model that Triton serves."""
        try:
            metadata = await self._client.get_model_metadata(spec.name, client_timeout=self.timeout_s)
        except InferenceServerException as error:
            raise _translate(error, self.url, spec.name) from None
        versions = sorted(metadata.versions, key=lambda v: int(v) if v.isdigit() else -1)
        return versions[-1] if versions else ""

    async def infer(self, spec: ModelSpec, arrays: dict[str, np.ndarray], version: str = "") -> dict[str, np.ndarray]:
        """Run one request through the model (that version of it; the serving pipeline always names one, since
        several versions can be loaded at once); arrays are keyed by the spec's input names."""
        inputs = []
        for tensor in spec.inputs:
            array = np.ascontiguousarray(arrays[tensor.name], dtype=tensor.numpy_dtype)
            infer_input = InferInput(tensor.name, list(array.shape), tensor.triton_dtype.removeprefix("TYPE_"))
            infer_input.set_data_from_numpy(array)
            inputs.append(infer_input)
        outputs = [InferRequestedOutput(name) for name in spec.output_names]
        timeout = self.timeout_s
        left = remaining()  # the caller's deadline (orchestrator/deadline.py), when shorter
        if left is not None:
            if left <= 0:
                raise DeadlineMissed(f"{spec.name} not asked: the call's deadline had passed")
            timeout = min(timeout, left)
        try:
            result = await self._client.infer(spec.name, inputs, model_version=version, outputs=outputs,
                                              client_timeout=timeout)
        except InferenceServerException as error:
            raise _translate(error, self.url, spec.name) from None
        return {name: result.as_numpy(name) for name in spec.output_names}


def _translate(error: InferenceServerException, url: str, model: str) -> TritonError:
    status = (error.status() or "").upper()
    message = error.message() or str(error)
    if "UNAVAILABLE" in status:
        return TritonUnavailable(f"Triton at {url} is unreachable: {message}")
    if "DEADLINE" in status:
        return DeadlineMissed(f"Triton model {model} missed its deadline: {message}")
    return TritonError(f"Triton model {model} failed: {message}")

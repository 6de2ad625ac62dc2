"""Dynamic batching on and off, in one process and one run: the same closed-loop load against the same model.

Usage:
    .venv/bin/python benchmarks/dynamic_batching.py --model bi_encoder [--concurrency 16] [--requests 1000] [--json]

One tritonserver serves the exported model twice from a scratch repository: as `NAME`, its config unchanged
(dynamic batching on), and as `NAME_unbatched`, the same version folder with the `dynamic_batching` block
removed. `--concurrency` clients, each sending its next request as soon as the last one is answered, send the
same `--requests` requests to each (encoders: one demo-catalog title or query a request, as the orchestrator
sends queries; reranker: one query with 100 product texts). Prints one JSON object: throughput on/off and their
ratio, p50/p95 latency, and from Triton's statistics the share of server time spent queued and the mean number
of requests per model execution.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tritonclient.grpc.aio as triton_aio  # noqa: E402
from google.protobuf import text_format  # noqa: E402
from tritonclient.grpc import model_config_pb2 as mc  # noqa: E402

from core.catalog import load_catalog  # noqa: E402
from core.metrics import percentile  # noqa: E402
from core.specs import BI_ENCODER, MODELS, MULTILINGUAL_ENCODER, RERANKER, ModelSpec  # noqa: E402
from core.tokenization import PairEncoder, SentencePieceEncoder, TextEncoder  # noqa: E402
from orchestrator.triton import TritonClient  # noqa: E402
from orchestrator.triton_process import LocalTriton  # noqa: E402

DEMO = ROOT / "data" / "demo"
UNBATCHED = "_unbatched"


def scratch_repository(source: Path, name: str, into: Path, preferred: list[int] | None = None,
                       max_queue_delay_us: int | None = None, merge_requests: bool | None = None) -> None:
    """`into` holds the model as exported (or with other batching settings, to choose them) and a copy named
    NAME_unbatched without dynamic batching. `merge_requests` overrides the cpu Python backend's parameter (the
    reranker's is off: what merging would gain is measured with True)."""
    for variant in (name, name + UNBATCHED):
        folder = into / variant
        folder.mkdir()
        config = text_format.Parse((source / name / "config.pbtxt").read_text(), mc.ModelConfig())
        config.name = variant
        if variant.endswith(UNBATCHED):
            config.ClearField("dynamic_batching")
        else:
            if preferred is not None:
                del config.dynamic_batching.preferred_batch_size[:]
                config.dynamic_batching.preferred_batch_size.extend(preferred)
            if max_queue_delay_us is not None:
                config.dynamic_batching.max_queue_delay_microseconds = max_queue_delay_us
            if merge_requests is not None and "merge_requests" in config.parameters:
                config.parameters["merge_requests"].string_value = "true" if merge_requests else "false"
        (folder / "config.pbtxt").write_text(text_format.MessageToString(config))
        for version in (source / name).iterdir():
            if version.is_dir() and version.name.isdigit():
                (folder / version.name).symlink_to(version.resolve(), target_is_directory=True)


def requests_for(spec: ModelSpec, source: Path, count: int) -> list[dict]:
    """`count` tokenized requests, shaped as the orchestrator sends them."""
    products = load_catalog(DEMO / "catalog.csv")
    texts = [product.title for product in products] + [product.search_text() for product in products]
    if spec is RERANKER:
        encoder = PairEncoder(source / BI_ENCODER.name / "tokenizer.json", 48)
        queries = [product.category or product.title for product in products]
        return [encoder(queries[i % len(queries)], [p.search_text() for p in products[:100]]) for i in range(count)]
    if spec is MULTILINGUAL_ENCODER:
        encoder = SentencePieceEncoder(source / spec.name / "sp.model", 64)
    else:
        encoder = TextEncoder(source / spec.name / "tokenizer.json", 64)
    return [encoder([texts[i % len(texts)]]) for i in range(count)]


async def closed_loop(client: TritonClient, spec: ModelSpec, requests: list[dict], concurrency: int) -> tuple[float, list[float]]:
    """(seconds for all requests, each request's latency in ms) with `concurrency` clients in a closed loop."""
    pending = iter(requests)
    latencies: list[float] = []

    async def worker() -> None:
        for feeds in pending:
            started = time.perf_counter()
            await client.infer(spec, feeds)
            latencies.append((time.perf_counter() - started) * 1000.0)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started, latencies


async def server_time(url: str, name: str) -> dict[str, float]:
    """Cumulative nanoseconds queued and computing, requests and executions, from Triton's statistics."""
    client = triton_aio.InferenceServerClient(url=url)
    try:
        stats = (await client.get_inference_statistics(model_name=name)).model_stats[0]
    finally:
        await client.close()
    inference = stats.inference_stats
    return {
        "queue_ns": inference.queue.ns,
        "compute_ns": inference.compute_input.ns + inference.compute_infer.ns + inference.compute_output.ns,
        "requests": inference.success.count,
        "executions": stats.execution_count,
    }


async def measure(url: str, spec: ModelSpec, requests: list[dict], concurrency: int) -> dict:
    client = TritonClient(url, timeout_s=60.0)
    variants = {"on": spec, "off": dataclasses.replace(spec, name=spec.name + UNBATCHED)}
    try:
        await client.wait_until_ready(list(variants.values()), 120.0)
        for variant in variants.values():  # warm-up
            await closed_loop(client, variant, requests[: 4 * concurrency], concurrency)
        result = {}
        for label, variant in variants.items():
            before = await server_time(url, variant.name)
            seconds, latencies = await closed_loop(client, variant, requests, concurrency)
            after = await server_time(url, variant.name)
            delta = {key: after[key] - before[key] for key in after}
            busy = delta["queue_ns"] + delta["compute_ns"]
            result[label] = {
                "throughput_rps": len(requests) / seconds,
                "p50_ms": percentile(latencies, 50),
                "p95_ms": percentile(latencies, 95),
                "queue_share": delta["queue_ns"] / busy if busy else 0.0,
                "requests_per_execution": delta["requests"] / delta["executions"] if delta["executions"] else 0.0,
            }
    finally:
        await client.close()
    on, off = result["on"], result["off"]
    return {
        "model": spec.name, "concurrency": concurrency, "requests": len(requests),
        "throughput_ratio": round(on["throughput_rps"] / off["throughput_rps"], 3),
        "throughput_on_rps": round(on["throughput_rps"], 1), "throughput_off_rps": round(off["throughput_rps"], 1),
        "p50_on_ms": round(on["p50_ms"], 2), "p50_off_ms": round(off["p50_ms"], 2),
        "p95_on_ms": round(on["p95_ms"], 2), "p95_off_ms": round(off["p95_ms"], 2),
        "queue_share_on": round(on["queue_share"], 3), "queue_share_off": round(off["queue_share"], 3),
        "requests_per_execution_on": round(on["requests_per_execution"], 2),
        "requests_per_execution_off": round(off["requests_per_execution"], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(MODELS), default=BI_ENCODER.name)
    parser.add_argument("--model-repository", type=Path, default=ROOT / "model_repository" / "cpu")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--preferred", help="try other preferred batch sizes, e.g. 16,32 (none: '')")
    parser.add_argument("--max-queue-delay-us", type=int, help="try another max queue delay")
    parser.add_argument("--merge-requests", choices=("true", "false"),
                        help="override the cpu backend's merge_requests (the reranker runs each request alone)")
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    args = parser.parse_args()

    spec = MODELS[args.model]
    source = args.model_repository.resolve()
    requests = requests_for(spec, source, args.requests)
    with tempfile.TemporaryDirectory(prefix="shoprank-batching-") as scratch:
        preferred = None if args.preferred is None else [int(n) for n in args.preferred.split(",") if n]
        merge = None if args.merge_requests is None else args.merge_requests == "true"
        scratch_repository(source, spec.name, Path(scratch), preferred, args.max_queue_delay_us, merge)
        with LocalTriton(Path(scratch), start_timeout_s=180.0) as triton:
            result = asyncio.run(measure(triton.url, spec, requests, args.concurrency))
    result["preferred_batch_sizes"] = preferred if preferred is not None else list(spec.preferred_batch_sizes)
    served = text_format.Parse((source / spec.name / "config.pbtxt").read_text(), mc.ModelConfig())
    result["max_queue_delay_us"] = (args.max_queue_delay_us if args.max_queue_delay_us is not None
                                    else served.dynamic_batching.max_queue_delay_microseconds)
    if args.merge_requests is not None:
        result["merge_requests"] = args.merge_requests == "true"
    if not args.json:
        print(f"{spec.name}: {args.requests} requests, {args.concurrency} clients in a closed loop, batching on vs off")
    print(json.dumps(result))


if __name__ == "__main__":
    main()

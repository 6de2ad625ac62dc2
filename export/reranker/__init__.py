"""Exporting the cross-encoder reranker to ONNX in three precisions, each held to an accuracy gate.

    fp32  torch.onnx.export of the trained adapter merged into the base weights, parity-checked against PyTorch
    fp16  the fp32 graph in float16 inside, int64 inputs and the float32 `score` kept: the gpu target's file
    int8  ONNX Runtime quantization, dynamic (of the fp32 graph fused for CPU by ONNX Runtime's transformer
          optimizer) or static (QDQ of the plain fp32 graph, calibrated on train-split pairs): the cpu target's file

Quantized scores are not compared to FP32's one by one (every score moves a little); what must hold is the
ranking: each precision's mean nDCG@10 on held-out judged queries may fall at most `tolerance` below FP32's.

One module a step, in the order `repository.export_reranker_repository` runs them:

    fp32.py        the adapter to the fp32 ONNX graph, parity-checked against PyTorch
    fp16.py        the fp32 graph to float16
    fusion.py      the fp32 graph fused for ONNX Runtime's CPU kernels
    int8.py        int8 quantization, and the train-split pairs static quantization calibrates on
    gate.py        the accuracy gate: its judged queries, each precision's nDCG@10, the verdict
    repository.py  the steps in order; the files, configs and combination weights each target serves

and what the steps share: pairs.py (the pairs the reranker is fed, encoded as the orchestrator encodes them) and
session.py (an ONNX Runtime session as the cpu target runs one).
"""

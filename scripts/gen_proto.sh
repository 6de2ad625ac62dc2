#!/usr/bin/env bash
# Regenerates core/_proto from proto/ (needs the dev extra: grpcio-tools).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
out=core/_proto
rm -rf "$out/shoprank"
"$PY" -m grpc_tools.protoc -I proto --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" \
    proto/shoprank/v1/ranking.proto proto/shoprank/v1/admin.proto
touch "$out/__init__.py" "$out/shoprank/__init__.py" "$out/shoprank/v1/__init__.py"
# protoc writes absolute imports ("from shoprank.v1 import ..."); make them relative to this package.
sed -i 's/^from shoprank\.v1 import/from . import/' "$out/shoprank/v1/ranking_pb2_grpc.py" "$out/shoprank/v1/admin_pb2_grpc.py"

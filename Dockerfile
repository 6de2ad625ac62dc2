# The shoprank orchestrator for GPU deployments (docker-compose.yml): the serving path only, no torch.
# Triton runs in its own container; the models and their tokenizer come from `shoprank export`
# (model_repository/gpu), mounted at run time. The catalog is in Milvus when SHOPRANK_CATALOG_STORE names one
# (docker-compose.yml), else the index from `shoprank index` mounted at /index.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

# Install first from what the package needs, so code-only changes reuse the dependency layer.
# Every package pyproject.toml's package list names: a missing one would leave `shoprank` without it.
COPY pyproject.toml README.md ./
COPY cli/ cli/
COPY core/ core/
COPY orchestrator/ orchestrator/
COPY export/ export/
COPY training/ training/
COPY workbench/ workbench/
RUN pip install .

COPY proto/ proto/
COPY data/ data/

EXPOSE 50051 50052
CMD ["shoprank", "serve", "--triton-url", "triton:8001", "--host", "0.0.0.0", "--port", "50051", "--index", "/index"]

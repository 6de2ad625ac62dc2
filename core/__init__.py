"""The layer serving, training and export share: catalog, text analysis, tokenization, match features, combination
weights, spelling, model specs, judgments and metrics, settings, errors and the generated gRPC code.

It imports nothing of the packages above it (pyproject.toml, [tool.importlinter]).
"""

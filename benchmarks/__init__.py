"""Measurements of shoprank, run as scripts from the repository root; with loadtest/, the top layer: they run the
service through orchestrator.harness, never through the CLI."""

"""irtmon: immuno-radiotherapy response monitor (CLI, settings and the local stack)."""

__version__ = "0.1.0"

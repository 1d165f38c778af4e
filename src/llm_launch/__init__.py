"""llm-launch: a self-hosted control plane for LLM inference endpoints."""

__version__ = "0.1.0"

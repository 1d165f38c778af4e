"""`python -m llm_launch` runs the CLI."""

from llm_launch.cli import app

app()

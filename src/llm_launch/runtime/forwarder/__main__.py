"""`python -m llm_launch.runtime.forwarder`: run the forwarder."""

from llm_launch.runtime.forwarder.cli import main

main()

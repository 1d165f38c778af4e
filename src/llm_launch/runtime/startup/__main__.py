"""`python -m llm_launch.runtime.startup`: run the startup program."""

from llm_launch.runtime.startup.program import main

main()

"""`python -m llm_launch.simulator [SGLang launch_server flags]` runs the simulated engine."""

from llm_launch.simulator.server import main

raise SystemExit(main())

"""`python -m llm_launch.simulator [SGLang launch_server flags]` runs the simulated engine;
`... vllm serve MODEL [vLLM flags]` the simulated vLLM server (`simulator.vllm`), and
`... ray start|status [Ray flags]` the simulated `ray` command of a vLLM group
(`simulator.ray_cli`)."""

import sys

from llm_launch.simulator import ray_cli, vllm
from llm_launch.simulator.server import main

ARGV = sys.argv[1:]
if ARGV[:1] == ["vllm"]:
    raise SystemExit(vllm.main(ARGV[1:]))
if ARGV[:1] == ["ray"]:
    raise SystemExit(ray_cli.main(ARGV[1:]))
raise SystemExit(main())

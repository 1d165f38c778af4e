"""The SIMULATED engines: GPU-free stand-ins for SGLang and vLLM (with Ray), named and
announced as such.

Run as `python -m llm_launch.simulator [SGLang launch_server flags]`, or with `vllm serve ...`
or `ray start|status ...` in front of those programs' flags; see README.md in this folder
for the flags, the groups they form, the token rule and the latency model. Imports nothing
from llm_launch's API, services, store or backends.
"""

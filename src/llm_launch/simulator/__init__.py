"""The SIMULATED SGLang engine: a GPU-free stand-in, named and announced as such.

Run as `python -m llm_launch.simulator [SGLang launch_server flags]`; see README.md in
this folder for the flags, the token rule and the latency model. Imports nothing from
llm_launch's API, services, store or backends.
"""

"""The in-pod startup program: find the leader, fetch the weights, wait for the group, exec the
engine, reporting each phase.

`python -m llm_launch.runtime.startup` runs it (`program.py`); `network.py` resolves
addresses, `weights.py`/`weights_clients.py` fetch checkpoints, `engine_command.py` builds
the engine's argv, `progress.py` writes the startup report.
"""

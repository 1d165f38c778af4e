"""The forwarder: the HTTP server in front of a group's engine (port 5000 on the leader).

`python -m llm_launch.runtime.forwarder` runs it (`cli.py`); `app.py` is the ASGI app,
`transport.py` its pooled engine connections, `engines.py`/`stream.py` the per-engine
translations of Launch's shapes, `ready.py` the generation check, `drain.py` the preStop hook.
"""

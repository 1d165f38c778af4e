"""Orchestrator backends: what turns an endpoint spec into running engines.

`base.Backend` is the whole contract; `local/` (processes on this machine) and
`kubernetes/` (LeaderWorkerSets and Deployments) implement it.
"""

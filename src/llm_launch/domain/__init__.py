"""Pure types and rules of llm-launch: endpoint specs, hardware, frameworks, status, errors.

Nothing here does I/O or imports a web, database or Kubernetes library; the API,
store and backends all depend on this package, never the other way round.
"""

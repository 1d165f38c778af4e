"""Programs that run inside a pod or local process: startup, weights, forwarder."""

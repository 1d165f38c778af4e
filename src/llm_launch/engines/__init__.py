"""Launch planning: framework -> LaunchPlan (leader/worker commands, env, ports, probes)."""

"""In-memory and tiny-server fakes for tests (one per module)."""

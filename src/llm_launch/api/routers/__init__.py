"""One router per resource: health, model endpoints (and, later, inference)."""

"""Packaged configuration files and their loaders (hardware catalog)."""

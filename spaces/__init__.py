"""Bundled search spaces (YAML data, shipped with the package)."""

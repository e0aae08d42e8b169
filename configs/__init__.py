"""Bundled YAML registries (installed as the package ``lampctl.configs``)."""

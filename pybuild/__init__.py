"""pybuild: a rootless OCI container image toolchain."""

# the one place the version is written (pyproject.toml reads it); a plain value, because looking it
# up through importlib.metadata costs ~30 ms on every command
__version__ = "0.1.0.dev0"

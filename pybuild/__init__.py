"""pybuild: a rootless OCI container image toolchain."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("pybuild")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

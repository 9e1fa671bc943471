"""The version of pytest-darklaunch, written here only: setuptools reads it statically for the
package metadata; the package face, ``python -m pytest_darklaunch --version`` and the report
header import it."""

__version__ = "0.1.0"

"""Repository-level conftest: the plugin's own test suite runs its examples with pytester."""

pytest_plugins = ["pytester"]

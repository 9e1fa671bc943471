"""Output of a run: header, progress, terminal summary, JUnit properties and report files.

Imports run one way: ``terminal`` -> ``files`` -> ``plots``, ``json_report``, ``github``,
``junit`` -> ``assessment`` -> ``progress`` (checked by tests/test_package_hygiene.py).
"""

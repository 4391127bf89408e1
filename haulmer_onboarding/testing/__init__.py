"""Test helpers for the SDK and for product teams: real files, real servers.

The journey testing kit (``scenario``) walks a customer through a whole
deployment on real parts; ``pytest_plugin`` offers it to every test suite as
fixtures, loaded through pytest's ``pytest11`` entry point (docs/testing.md).
"""

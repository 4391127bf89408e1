"""Test helpers for the SDK and for product teams: real files, real servers."""

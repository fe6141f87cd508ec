"""Test suite for graphile-worker for Python."""

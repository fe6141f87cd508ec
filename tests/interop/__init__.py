"""Python and Node graphile-worker side by side on one database (see conftest.py)."""

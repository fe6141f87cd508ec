"""Modules that tests/test_task.py loads with load_tasks (not test modules themselves)."""

"""A package whose tasks module uses a relative import, loaded by file path in the tests."""

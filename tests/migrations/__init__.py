"""Migration tests: parity with Node graphile-worker and the migrator's rules."""

"""Performance harness for logged-execution (not part of the test run). See docs/performance.md."""

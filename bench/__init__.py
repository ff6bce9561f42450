"""Benchmark harness of codacy.selfhosted (not part of the collection): see bench/README.md."""

"""Benchmarks for edgeseq against its peers (run as ``python -m bench.decode``)."""

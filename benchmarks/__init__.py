"""Benchmarks for Elastic: a load generator (`elastic bench load`) and the full comparison suite
(`elastic bench suite`, what `make bench` runs) that regenerates BENCHMARKS.md."""

"""Results as evidence: provenance stamps, results files, tables and README rendering.

Nothing in the numerics packages imports this package; benchmarks, the pipeline and the CLI do.
"""

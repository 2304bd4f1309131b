"""runlake: a local-first metrics pipeline for ML training.

``import runlake`` stays light: it imports the emitter only (msgspec, zstandard). The
store (duckdb), analysis (polars) and dashboard (streamlit) load on first use.
"""

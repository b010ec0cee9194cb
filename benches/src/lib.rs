//! Shared inputs for pgvigil's micro-benchmarks.

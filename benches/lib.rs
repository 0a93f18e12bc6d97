//! Holds Dropline's criterion benchmarks (see `benches/`); the library itself is empty.

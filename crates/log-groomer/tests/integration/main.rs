//! Integration tests (placeholder, filled below).

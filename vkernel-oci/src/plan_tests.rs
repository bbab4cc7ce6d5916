//! Unit tests of config.json translation.

//! vkernel core.

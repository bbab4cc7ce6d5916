//! vkernel devices.

//! vkernel guest.

//! GPU knowledge that does not depend on a cloud: MIG geometry and what GPU
//! sharing makes the NVIDIA device plugin advertise.

pub mod mig;
pub mod sharing;

#[cfg(test)]
mod tests;

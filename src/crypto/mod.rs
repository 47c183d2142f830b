//! Cipher suites behind one small interface, and the batch paths the hot loop uses.

pub mod algorithm;

pub use algorithm::{AuthAlgorithm, EncrAlgorithm};

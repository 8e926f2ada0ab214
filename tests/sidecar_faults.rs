//! Placeholder.
#![cfg(test)]

//! Signed statements (`writ-statement-v1`): what a human signs with its own Ed25519
//! key when it requests or approves, so that the kernel's operator cannot forge it.

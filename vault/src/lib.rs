//! writ-vault: envelope-encrypted secrets (arrives with the vault issue).

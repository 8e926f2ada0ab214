//! writ-server: identity, the decide -> record -> answer flow and HTTP (arrives with the sidecar issue).

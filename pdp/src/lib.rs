//! writ-pdp: the Cedar policy decision point (arrives with the sidecar issue).

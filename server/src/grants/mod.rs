//! Break-glass elevations, approval gates and consents: the three ways a decision can
//! rest on something other than a principal's standing roles, each recorded in the
//! ledger before it takes effect.

pub mod statement;

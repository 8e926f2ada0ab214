//! Break-glass, approval gates and consents through the router (`oneshot`), with a
//! manual clock so that expiries happen without waiting and without any call.
#![cfg(test)]

mod break_glass;
mod consent;
mod fixture;
mod four_eyes;
mod gates;

//! Test support shared by the end-to-end tests (`it/`), the `lf` tests and the benches:
//! a model hub on loopback ([`hub::HubServer`]).

pub mod hub;

//! The comune as fruitore: obtaining PDND vouchers and calling other administrations.

pub mod token_client;

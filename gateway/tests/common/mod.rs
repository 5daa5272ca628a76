//! What several suites of the binary share, compiled into each of them (`mod common;`).

pub mod dev_process;

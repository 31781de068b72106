//! Integration tests: the real `aetherflow` binary on real flows, real SQLite, real
//! processes and real components built from source (tests/guests, examples/steps).

mod harness;

mod archive;
mod cli;
mod config;
mod crash;
mod data_safety;
mod db_golden;
mod db_parquet;
mod db_postgres;
mod examples;
mod gating;
mod hostile;
mod http;
mod limits;
mod locks;
mod mail;
mod parity;
mod parity_diag;
mod parity_runs;
mod provenance;
mod resume;
mod runs;
mod sandbox;
mod secrets;
mod sftp;
mod steps_cmd;

//! `infra/` (Terraform on AWS) and what it deploys, tested without an AWS account:
//!
//! - [`checks`]: `terraform fmt`, `validate`, `terraform test` (mocked provider) and checkov;
//! - [`apply`]: the configuration applied to and destroyed on the moto emulator, with what the
//!   emulator then holds checked;
//! - [`bootstrap`]: the instances' bootstrap script run in a temporary root, and shellcheck;
//! - [`login`]: the server configured as on AWS, its database login from a Secrets Manager
//!   secret on the emulator, through a rotation.
//!
//! terraform, checkov, shellcheck and moto are installed by `.ci/run`; without them these tests
//! say "skipping", except under `CI=true`.

#[path = "../common/mod.rs"]
mod common;

#[allow(dead_code)]
#[path = "../tls/certs.rs"]
mod certs;

mod apply;
mod bootstrap;
mod checks;
mod login;
mod terraform;

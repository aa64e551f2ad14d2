//! The host's identity with a dcmon receiver: its RSA key (generated at
//! registration, never leaving the state directory) and its enrollment
//! (server URL, client id, JWT audience), from which every request's
//! short-lived JWT is signed.
//!
//! State directory layout:
//! - `client.key`: the private key, PKCS#8 PEM, mode 0600;
//! - `enrollment.json`: the receiver's answer to the registration, plus its URL.

pub mod enrollment;
pub mod register;
pub mod signer;

pub use self::enrollment::{Enrollment, IdentityStore};
pub use self::signer::JwtSigner;

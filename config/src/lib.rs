//! weir's configuration: YAML files in, one validated, immutable [`Model`] out.
//!
//! The pipeline has three stages, each in its own module:
//!
//! 1. [`load`] reads a file or a folder into located YAML documents ([`node`]), so every
//!    later error can name a file, a line and a field;
//! 2. [`raw`] holds serde mirrors of the documents (no defaults, no logic);
//! 3. `validate` turns them into the [`model`], applying the defaults of [`defaults`] and
//!    checking how documents refer to each other, reporting every issue at once.
//!
//! [`watch`] runs the pipeline again whenever a watched file changes and publishes only
//! good models: a bad edit is reported and the last good model stays in force.

pub mod analysis;
pub mod defaults;
pub mod duration;
pub mod error;
pub mod load;
pub mod model;
pub mod node;
pub mod raw;
pub mod rollout;
mod tls;
mod validate;
mod validate_argo;
pub mod watch;

pub use error::{ConfigError, Issue, Notice};
pub use load::{load, load_str};
pub use model::Model;
pub use validate::{ARGO_API, WEIR_API};

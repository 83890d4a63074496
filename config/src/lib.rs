//! weir's configuration: YAML files in, one validated, immutable [`Model`] out.
//!
//! The pipeline has four stages, one folder each. Each imports only the stages before
//! it (read <- decode <- validate <- load) and the leaves ([`error`], [`defaults`],
//! [`duration`] and the model: [`model`], [`rollout`], [`analysis`]):
//!
//! 1. [`read`]: a file or a folder -> located YAML documents ([`read::node`]), so that
//!    every later error can name a file, a line and a field. No knowledge of kinds.
//! 2. [`decode`]: documents -> typed serde mirrors, one file per kind family (weir's own
//!    kinds, Argo Rollouts' with their analysis metrics, the Kubernetes core kinds, the
//!    Gateway API's, Ingress). Canary steps are an enum; integer, IntOrString and other scalar fields are
//!    typed and keep what was written when it is wrong, so one bad value does not hide
//!    the document's other errors. No defaults, no cross-document knowledge.
//! 3. [`validate`]: mirrors -> the model and every issue, by pure functions: one file per
//!    kind, the [`defaults`] applied, the checks one document makes against another in
//!    one place. It reads no file, resolves no name and looks at no environment
//!    variable; the I/O it needs is listed ([`validate::Io`]), each piece with the field
//!    that asked for it.
//! 4. [`load`](mod@load): that I/O (host names resolved, certificates read and checked, the files
//!    fingerprinted, the environment read), failures reported at their fields, and the
//!    entry points [`load()`] and [`load_str`] that run all four stages.
//!
//! A new kind slots in as a mirror file in `decode/`, a validator file in `validate/`
//! and one line in each stage's list of kinds.
//!
//! [`analysis::decode_metric`] is also used at run time: a template's metrics stay JSON
//! in the model until a run resolves their `{{args.x}}` placeholders.
//!
//! [`watch`] runs the pipeline again whenever a watched file changes and publishes only
//! good models: a bad edit is reported and the last good model stays in force.

pub mod analysis;
pub mod decode;
pub mod defaults;
pub mod duration;
pub mod error;
pub mod load;
pub mod model;
pub mod read;
pub mod rollout;
pub mod validate;
pub mod watch;

pub use decode::{ARGO_API, WEIR_API};
pub use error::{ConfigError, Issue, Notice};
pub use load::{Loader, load, load_str};
pub use model::Model;

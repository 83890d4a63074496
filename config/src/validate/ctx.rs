//! The context every part of validation reports through, and the helpers the kinds share:
//! names, durations, whole numbers.

use std::time::Duration;

use crate::analysis::MetricEnv;
use crate::decode::Findings;
use crate::decode::scalar::Int;
use crate::duration;
use crate::read::Document;

use super::io::Io;

/// Collects issues, notices and the I/O to do while validating.
#[derive(Debug, Default)]
pub(crate) struct Ctx {
    pub(super) findings: Findings,
    pub(super) io: Io,
    /// What analysis metrics may take from the environment, read by the load stage.
    pub(super) env: MetricEnv,
}

impl Ctx {
    pub(super) fn new(findings: Findings, env: MetricEnv) -> Ctx {
        Ctx {
            findings,
            io: Io::default(),
            env,
        }
    }

    pub(crate) fn issue(&mut self, doc: &Document, field: &str, message: impl Into<String>) {
        self.findings.issue(doc, field, message);
    }

    pub(crate) fn notice(&mut self, doc: &Document, field: &str, message: impl Into<String>) {
        self.findings.notice(doc, field, message);
    }

    /// A notice about something that will go wrong at run time unless fixed.
    pub(crate) fn warn(&mut self, doc: &Document, field: &str, message: impl Into<String>) {
        self.findings.warn(doc, field, message);
    }

    /// How many issues have been found so far (to tell whether a part added any).
    pub(crate) fn issue_count(&self) -> usize {
        self.findings.issues.len()
    }

    /// A Go duration field, or its default.
    pub(crate) fn duration(
        &mut self,
        doc: &Document,
        field: &str,
        value: Option<&str>,
        default: Duration,
    ) -> Duration {
        match value {
            None => default,
            Some(s) => match duration::parse_go(s) {
                Ok(d) => d,
                Err(e) => {
                    self.issue(doc, field, e.to_string());
                    default
                }
            },
        }
    }
}

/// `metadata.name`: present, and a DNS-1123 subdomain as Kubernetes requires.
pub(super) fn check_name(ctx: &mut Ctx, doc: &Document, name: Option<&str>) -> Option<String> {
    match name {
        None | Some("") => {
            ctx.issue(
                doc,
                "metadata.name",
                format!(
                    "{} has no metadata.name: every {} needs a name",
                    doc.kind().unwrap_or("document"),
                    doc.kind().unwrap_or("document")
                ),
            );
            None
        }
        Some(n) if !is_dns_subdomain(n) => {
            ctx.issue(
                doc,
                "metadata.name",
                format!(
                    "{n:?} is not a valid name: use lower-case letters, digits, '-' and '.', starting and ending with a letter or digit"
                ),
            );
            None
        }
        Some(n) => Some(n.to_owned()),
    }
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
}

/// The kind of a template reference.
pub(super) fn kind_name(cluster: bool) -> &'static str {
    if cluster {
        "ClusterAnalysisTemplate"
    } else {
        "AnalysisTemplate"
    }
}

/// An integer field, if it is written; what is not a whole number is an issue.
pub(super) fn int_field(
    ctx: &mut Ctx,
    doc: &Document,
    field: &str,
    v: Option<&Int>,
) -> Option<i64> {
    match v? {
        Int::Int(n) => Some(*n),
        Int::Other(w) => {
            ctx.issue(doc, field, format!("{w} is not a whole number"));
            None
        }
    }
}

/// A field of whole seconds, or its default.
pub(super) fn secs_field(
    ctx: &mut Ctx,
    doc: &Document,
    field: &str,
    v: Option<&Int>,
    default: Duration,
) -> Duration {
    match int_field(ctx, doc, field, v) {
        None => default,
        Some(n) if n >= 0 => match duration::whole_seconds(n as u64) {
            Ok(d) => d,
            Err(e) => {
                ctx.issue(doc, field, e.to_string());
                default
            }
        },
        Some(n) => {
            ctx.issue(doc, field, format!("{n} is negative"));
            default
        }
    }
}

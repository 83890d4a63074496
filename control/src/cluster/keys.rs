//! Where cluster mode keeps things in etcd.
//!
//! Every key is built here, from one prefix (`/weir` unless the proxy config says
//! otherwise), so that the layout is written down once and several weir clusters can share
//! one etcd under different prefixes:
//!
//! | key | lease | written by |
//! |---|---|---|
//! | `<prefix>/v1/members/<node>` | the node's session | that node |
//! | `<prefix>/v1/leader/<lease in hex>` | the candidate's session | the election |
//! | `<prefix>/v1/rollouts/<ns>/<name>/status` | none | the leader, fenced |
//! | `<prefix>/v1/rollouts/<ns>/<name>/metrics/<node>` | the node's session | that node |
//! | `<prefix>/v1/rollouts/<ns>/<name>/requests/<id>` | none | any replica or the CLI |
//!
//! `v1` leaves room for a later layout beside this one. The leader keys follow etcd's own
//! election layout (`concurrency.Election`: `<name>/<lease id in hex>`), so `etcdctl` shows
//! them as it shows any election. Names that go into keys are checked: a `/` in a node name
//! would put its key in another place, so it is refused rather than escaped.

use super::error::{ClusterError, Result};

/// The key layout under one prefix. See the [module docs](self).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

/// The prefix used when the proxy config names none.
pub const DEFAULT_PREFIX: &str = "/weir";

/// Longest name accepted in a key (a DNS name's length).
const MAX_NAME: usize = 253;

impl Default for Keys {
    fn default() -> Self {
        Keys {
            prefix: DEFAULT_PREFIX.to_owned(),
        }
    }
}

impl Keys {
    /// The layout under `prefix`, which starts with `/`, does not end with one, and is made of
    /// non-empty segments of printable ASCII (`/weir`, `/prod/edge`).
    ///
    /// # Errors
    ///
    /// [`ClusterError::InvalidName`] for any other prefix.
    pub fn new(prefix: &str) -> Result<Keys> {
        let invalid = || ClusterError::InvalidName {
            what: "prefix",
            value: prefix.to_owned(),
            hint: "a key prefix such as /weir: starts with '/', no trailing '/', no empty segment, printable ASCII",
        };
        let Some(rest) = prefix.strip_prefix('/') else {
            return Err(invalid());
        };
        if rest.is_empty()
            || rest.split('/').any(str::is_empty)
            || !prefix.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(invalid());
        }
        Ok(Keys {
            prefix: prefix.to_owned(),
        })
    }

    /// The prefix, as given.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `<prefix>/v1/members/`: the prefix of every member key.
    pub fn members(&self) -> String {
        format!("{}/v1/members/", self.prefix)
    }

    /// `<prefix>/v1/members/<node>`.
    ///
    /// # Errors
    ///
    /// [`ClusterError::InvalidName`] when `node` is not a valid name (see [`check_name`]).
    pub fn member(&self, node: &str) -> Result<String> {
        check_name("node", node)?;
        Ok(format!("{}{node}", self.members()))
    }

    /// `<prefix>/v1/leader/`: the election's name; candidates' keys are under it.
    pub fn leader(&self) -> String {
        format!("{}/v1/leader/", self.prefix)
    }

    /// `<prefix>/v1/leader/<lease in hex>`: the candidacy key of the session with `lease`.
    pub fn candidate(&self, lease: i64) -> String {
        format!("{}{lease:x}", self.leader())
    }

    /// `<prefix>/v1/rollouts/`: the prefix of every rollout's keys.
    pub fn rollouts(&self) -> String {
        format!("{}/v1/rollouts/", self.prefix)
    }

    /// `<prefix>/v1/rollouts/<namespace>/<name>/`: the prefix of one rollout's keys.
    ///
    /// # Errors
    ///
    /// [`ClusterError::InvalidName`] when either name is not valid.
    pub fn rollout(&self, namespace: &str, name: &str) -> Result<String> {
        check_name("namespace", namespace)?;
        check_name("rollout name", name)?;
        Ok(format!("{}{namespace}/{name}/", self.rollouts()))
    }

    /// `<prefix>/v1/rollouts/<namespace>/<name>/status`: the rollout's committed status.
    ///
    /// # Errors
    ///
    /// As [`rollout`](Self::rollout).
    pub fn status(&self, namespace: &str, name: &str) -> Result<String> {
        Ok(format!("{}status", self.rollout(namespace, name)?))
    }

    /// `<prefix>/v1/rollouts/<namespace>/<name>/metrics/`: every node's measurements.
    ///
    /// # Errors
    ///
    /// As [`rollout`](Self::rollout).
    pub fn metrics(&self, namespace: &str, name: &str) -> Result<String> {
        Ok(format!("{}metrics/", self.rollout(namespace, name)?))
    }

    /// `<prefix>/v1/rollouts/<namespace>/<name>/metrics/<node>`: one node's measurements.
    ///
    /// # Errors
    ///
    /// As [`rollout`](Self::rollout), and for an invalid node name.
    pub fn node_metrics(&self, namespace: &str, name: &str, node: &str) -> Result<String> {
        check_name("node", node)?;
        Ok(format!("{}{node}", self.metrics(namespace, name)?))
    }

    /// `<prefix>/v1/rollouts/<namespace>/<name>/requests/`: actions asked of the leader.
    ///
    /// # Errors
    ///
    /// As [`rollout`](Self::rollout).
    pub fn requests(&self, namespace: &str, name: &str) -> Result<String> {
        Ok(format!("{}requests/", self.rollout(namespace, name)?))
    }
}

/// Checks a name that goes into a key as one segment: 1 to 253 characters among ASCII
/// letters, digits, `.`, `_` and `-`, not `.` nor `..` (host names and Kubernetes names
/// fit).
///
/// # Errors
///
/// [`ClusterError::InvalidName`] naming `what`.
pub fn check_name(what: &'static str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ClusterError::InvalidName {
            what,
            value: name.to_owned(),
            hint: "1 to 253 of A-Z a-z 0-9 . _ - (not . or ..)",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_under_the_default_prefix() {
        let keys = Keys::default();
        assert_eq!(keys.prefix(), "/weir");
        assert_eq!(keys.members(), "/weir/v1/members/");
        assert_eq!(keys.member("node-1").unwrap(), "/weir/v1/members/node-1");
        assert_eq!(keys.leader(), "/weir/v1/leader/");
        assert_eq!(
            keys.candidate(0x694d_8a3c_1f2e),
            "/weir/v1/leader/694d8a3c1f2e"
        );
        assert_eq!(
            keys.status("default", "web").unwrap(),
            "/weir/v1/rollouts/default/web/status"
        );
        assert_eq!(
            keys.node_metrics("default", "web", "a").unwrap(),
            "/weir/v1/rollouts/default/web/metrics/a"
        );
        assert_eq!(
            keys.requests("default", "web").unwrap(),
            "/weir/v1/rollouts/default/web/requests/"
        );
    }

    #[test]
    fn prefixes() {
        assert!(Keys::new("/weir").is_ok());
        assert_eq!(
            Keys::new("/prod/edge").unwrap().leader(),
            "/prod/edge/v1/leader/"
        );
        for bad in ["", "/", "weir", "/weir/", "//weir", "/we ir", "/a//b", "/é"] {
            assert!(
                matches!(
                    Keys::new(bad),
                    Err(ClusterError::InvalidName { what: "prefix", .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn names_that_would_escape_their_segment_are_refused() {
        let keys = Keys::default();
        for bad in ["", "a/b", "..", ".", "a b", "ü", &"x".repeat(254)] {
            assert!(keys.member(bad).is_err(), "{bad:?}");
            assert!(keys.status(bad, "web").is_err(), "{bad:?}");
            assert!(keys.status("default", bad).is_err(), "{bad:?}");
        }
        assert!(
            keys.member("ip-10-0-0-1.eu-west-1.compute.internal")
                .is_ok()
        );
        assert!(keys.member(&"x".repeat(253)).is_ok());
    }
}

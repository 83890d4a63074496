//! Replica registration: who is in the cluster, and what each member runs.
//!
//! Each replica writes `<prefix>/v1/members/<node>` on its session lease, with a JSON
//! [`MemberInfo`]: where its admin API listens (so any replica can show the others, and the
//! leader can pull measurements directly if etcd traffic grows too large), its build, the
//! hash of each Rollout spec it has loaded (the leader advances a rollout only while every
//! live member has the same spec: during a config deploy they differ), and its incarnation
//! (which start of the node this is). The key lives exactly as long as the session, so the
//! member list is the set of live replicas without any heartbeat of its own.
//!
//! A node name belongs to one session at a time: registering a name that another live lease
//! holds fails with [`ClusterError::NodeTaken`] (two replicas started with the same
//! `--node`, or a restart within the previous process's TTL, which the caller waits out by
//! retrying).

use std::collections::BTreeMap;

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp, TxnOpResponse};
use serde::{Deserialize, Serialize};

use super::error::{ClusterError, Result};
use super::etcd::{Etcd, Kv, revision_of};
use super::keys::{Keys, check_name};
use super::session::Session;

/// What a member publishes about itself (the JSON value of its member key).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberInfo {
    /// The node name (`--node`, the host name by default); also the key's last segment.
    pub node: String,
    /// Where its admin API listens (`http://10.0.0.5:9901`).
    pub admin: String,
    /// weir's version.
    pub version: String,
    /// The hash of each Rollout spec it has loaded, by `namespace/name`.
    #[serde(default)]
    pub spec_hashes: BTreeMap<String, String>,
    /// Which start of the node this is (weir uses its session lease in hex: it changes with
    /// every start).
    pub incarnation: String,
}

/// A registered member, as read from etcd.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// What it published.
    pub info: MemberInfo,
    /// Its session lease.
    pub lease: i64,
    /// The revision of its last registration.
    pub mod_revision: i64,
}

/// A member key whose value could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidMember {
    /// The key.
    pub key: String,
    /// Why it was not understood.
    pub error: String,
}

/// The members, read at one revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberList {
    /// The revision of the read.
    pub revision: i64,
    /// The members, by node name.
    pub members: Vec<Member>,
    /// Keys under the members' prefix that are not valid registrations (written by something
    /// else, or by another version): reported, not fatal.
    pub invalid: Vec<InvalidMember>,
}

/// Reads a member key.
///
/// # Errors
///
/// [`ClusterError::Decode`] when the value is not a [`MemberInfo`];
/// [`ClusterError::InvalidName`] when its node name is not the key's last segment.
pub fn parse_member(keys: &Keys, kv: &Kv) -> Result<Member> {
    let info: MemberInfo =
        serde_json::from_slice(&kv.value).map_err(|source| ClusterError::Decode {
            key: kv.key.clone(),
            source,
        })?;
    if kv.key.strip_prefix(&keys.members()) != Some(info.node.as_str()) {
        return Err(ClusterError::InvalidName {
            what: "node",
            value: info.node,
            hint: "the member key's last segment",
        });
    }
    Ok(Member {
        info,
        lease: kv.lease,
        mod_revision: kv.mod_revision,
    })
}

/// Registers (or updates) this replica under its session lease; returns the revision.
///
/// # Errors
///
/// [`ClusterError::InvalidName`] for a node name that cannot be a key segment;
/// [`ClusterError::NodeTaken`] when another live session holds the name;
/// [`ClusterError::Timeout`] or [`ClusterError::Etcd`] (also when the lease is gone).
pub async fn register(
    etcd: &Etcd,
    keys: &Keys,
    session: &Session,
    info: &MemberInfo,
) -> Result<i64> {
    check_name("node", &info.node)?;
    let key = keys.member(&info.node)?;
    let value = serde_json::to_vec(info).map_err(|source| ClusterError::Decode {
        key: key.clone(),
        source,
    })?;
    let lease = session.lease();
    let put = || {
        TxnOp::put(
            key.clone(),
            value.clone(),
            Some(PutOptions::new().with_lease(lease)),
        )
    };
    // Absent, or already ours: write it. Else report who holds it.
    for compare in [
        Compare::create_revision(key.clone(), CompareOp::Equal, 0),
        Compare::lease(key.clone(), CompareOp::Equal, lease),
    ] {
        let txn = Txn::new()
            .when([compare])
            .and_then([put()])
            .or_else([TxnOp::get(key.clone(), None)]);
        let response = etcd.txn(txn).await?;
        if response.succeeded() {
            return revision_of(response.header());
        }
        let holder = response.op_responses().into_iter().find_map(|r| match r {
            TxnOpResponse::Get(get) => get.kvs().first().map(Kv::from),
            _ => None,
        });
        match holder {
            // Deleted in between: try again from the top next time.
            None => continue,
            Some(kv) if kv.lease == lease => continue,
            Some(kv) => {
                return Err(ClusterError::NodeTaken {
                    node: info.node.clone(),
                    lease: kv.lease,
                });
            }
        }
    }
    Err(ClusterError::Protocol(
        "the member key changed during registration; try again",
    ))
}

/// Removes this replica's registration if it is still this session's.
///
/// # Errors
///
/// [`ClusterError::InvalidName`], [`ClusterError::Timeout`] or [`ClusterError::Etcd`].
pub async fn deregister(etcd: &Etcd, keys: &Keys, session: &Session, node: &str) -> Result<bool> {
    let key = keys.member(node)?;
    let txn = Txn::new()
        .when([Compare::lease(
            key.clone(),
            CompareOp::Equal,
            session.lease(),
        )])
        .and_then([TxnOp::delete(key, None)]);
    Ok(etcd.txn(txn).await?.succeeded())
}

/// Every registered member (a linearizable read).
///
/// # Errors
///
/// [`ClusterError::Timeout`] or [`ClusterError::Etcd`]; values that are not valid
/// registrations are listed in [`MemberList::invalid`], not errors.
pub async fn list(etcd: &Etcd, keys: &Keys) -> Result<MemberList> {
    let listing = etcd.get_prefix(&keys.members()).await?;
    let mut members = Vec::new();
    let mut invalid = Vec::new();
    for kv in &listing.kvs {
        match parse_member(keys, kv) {
            Ok(member) => members.push(member),
            Err(e) => invalid.push(InvalidMember {
                key: kv.key.clone(),
                error: e.to_string(),
            }),
        }
    }
    Ok(MemberList {
        revision: listing.revision,
        members,
        invalid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &str) -> Kv {
        Kv {
            key: key.into(),
            value: value.as_bytes().to_vec(),
            create_revision: 5,
            mod_revision: 7,
            version: 2,
            lease: 0x42,
        }
    }

    #[test]
    fn member_json_round_trips_with_camel_case_names() {
        let info = MemberInfo {
            node: "a".into(),
            admin: "http://127.0.0.1:9901".into(),
            version: "0.1.0".into(),
            spec_hashes: BTreeMap::from([("default/web".into(), "abc".into())]),
            incarnation: "694d".into(),
        };
        let json = serde_json::to_string(&info).unwrap();
        assert!(json.contains("\"specHashes\""), "{json}");
        let member = parse_member(&Keys::default(), &kv("/weir/v1/members/a", &json)).unwrap();
        assert_eq!(member.info, info);
        assert_eq!((member.lease, member.mod_revision), (0x42, 7));
    }

    #[test]
    fn bad_values_are_errors_not_panics() {
        let keys = Keys::default();
        assert!(matches!(
            parse_member(&keys, &kv("/weir/v1/members/a", "not json")),
            Err(ClusterError::Decode { .. })
        ));
        let other = r#"{"node":"b","admin":"","version":"","incarnation":"1"}"#;
        assert!(matches!(
            parse_member(&keys, &kv("/weir/v1/members/a", other)),
            Err(ClusterError::InvalidName { .. })
        ));
    }
}

//! The revision history: new revisions, what is kept (`revisionHistoryLimit`), and the
//! rollback targets (`rollbackWindow`, blue-green fast rollback).

use super::*;

pub(super) fn new_revision(
    st: &mut RolloutStatus,
    hash: &str,
    image: &str,
    template: &serde_json::Value,
    limit: u32,
    now: Ms,
) -> Revision {
    let r = Revision {
        created_at: now,
        number: st.next_number,
        hash: hash.to_owned(),
        image: image.to_owned(),
        template: template.clone(),
    };
    st.next_number += 1;
    // A template seen before takes a new number, as Argo re-labels the ReplicaSet it
    // reuses: one entry per template.
    st.history.retain(|h| h.hash != r.hash);
    st.history.push(r.clone());
    trim_history(st, limit);
    r
}

/// Keeps the revisions in use (current, stable, active, the previous active) and the
/// `limit` newest others, as Argo keeps `revisionHistoryLimit` old ReplicaSets.
pub(super) fn trim_history(st: &mut RolloutStatus, limit: u32) {
    let in_use = |h: &Revision| {
        [
            st.current.as_ref(),
            st.stable.as_ref(),
            st.active.as_ref(),
            st.previous_active.as_ref().map(|(r, _)| r),
        ]
        .into_iter()
        .flatten()
        .any(|r| r.hash == h.hash)
    };
    let mut old_kept = 0;
    let keep: Vec<bool> = st
        .history
        .iter()
        .enumerate()
        .rev()
        .map(|(i, h)| {
            if i + 1 == st.history.len() || in_use(h) {
                true
            } else {
                old_kept += 1;
                old_kept <= limit
            }
        })
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let mut it = keep.into_iter();
    st.history.retain(|_| it.next().unwrap_or(true));
}

/// A revision older than stable is inside `rollbackWindow` when fewer than N
/// revisions were created between it and stable (argo-reference §2.8).
pub(super) fn in_rollback_window(
    st: &RolloutStatus,
    spec: &Rollout,
    hash: &str,
) -> Option<Revision> {
    let window = spec.rollback_window?;
    let stable = st.stable.as_ref()?;
    let stable_pos = st.history.iter().rposition(|r| r.hash == stable.hash)?;
    let target_pos = st.history[..stable_pos]
        .iter()
        .rposition(|r| r.hash == hash)?;
    let between = st.history[target_pos + 1..stable_pos]
        .iter()
        .filter(|r| r.hash != hash && r.hash != stable.hash)
        .map(|r| &r.hash)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    (between < window as usize).then(|| st.history[target_pos].clone())
}

/// Blue-green: the previous active revision is still up inside its scale-down delay.
pub(super) fn fast_rollback_target(
    st: &RolloutStatus,
    spec: &Rollout,
    hash: &str,
    now: Ms,
) -> Option<Revision> {
    if !matches!(spec.strategy, Strategy::BlueGreen(_)) {
        return None;
    }
    match &st.previous_active {
        Some((r, until)) if r.hash == hash && now < *until => Some(r.clone()),
        _ => None,
    }
}

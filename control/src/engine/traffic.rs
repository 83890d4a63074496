//! What the proxy should do for a status: the stable and canary images, the weight, and
//! the header, mirror and per-role host routes in force.

use super::*;

/// What the proxy should do for one Rollout.
#[derive(Clone, Debug, PartialEq)]
pub struct TrafficPlan {
    /// The image the stable share goes to (for blue-green: the active revision).
    pub stable: String,
    /// The canary (or preview) image, while there is one.
    pub canary: Option<String>,
    /// The canary's share.
    pub canary_weight: Weight,
    /// setHeaderRoute routes in force: (name, OR'd matches).
    pub header_routes: Vec<(String, Vec<HeaderMatch>)>,
    /// setMirrorRoute routes in force: (name, percentage, match blocks).
    pub mirror_routes: Vec<(String, Weight, Vec<MirrorMatch>)>,
    /// Hosts that reach one role: (host, true for the canary role).
    pub role_hosts: Vec<(String, bool)>,
}

/// What the proxy should do for this status.
pub fn traffic(
    st: &RolloutStatus,
    spec: &Rollout,
    has_endpoints: &(dyn Fn(&str) -> bool + Sync),
) -> Option<TrafficPlan> {
    let stable = st.stable.as_ref()?;
    let updating = st.updating();
    match &spec.strategy {
        Strategy::Canary(c) => {
            let canary = st
                .current
                .as_ref()
                .filter(|_| updating)
                .map(|r| r.image.clone());
            let capacity = canary.as_deref().is_some_and(has_endpoints);
            let weight = if capacity {
                desired_weight(st, c)
            } else {
                Weight::ZERO
            };
            let index = st.current_step_index.unwrap_or(0).min(c.steps.len());
            let mut header_routes: Vec<(String, Vec<HeaderMatch>)> = Vec::new();
            let mut mirror_routes: Vec<(String, Weight, Vec<MirrorMatch>)> = Vec::new();
            if updating && !st.aborted && capacity {
                for s in &c.steps[..index] {
                    match s {
                        Step::SetHeaderRoute { name, matches } => {
                            header_routes.retain(|(n, _)| n != name);
                            if !matches.is_empty() {
                                header_routes.push((name.clone(), matches.clone()));
                            }
                        }
                        Step::SetMirrorRoute {
                            name,
                            percentage,
                            matches,
                        } => {
                            mirror_routes.retain(|(n, _, _)| n != name);
                            if !matches.is_empty() {
                                mirror_routes.push((name.clone(), *percentage, matches.clone()));
                            }
                        }
                        _ => {}
                    }
                }
            }
            let mut role_hosts = Vec::new();
            if let Some(h) = &c.canary_service {
                // After an abort the canary service points back at stable.
                role_hosts.push((h.clone(), updating && !st.aborted));
            }
            if let Some(h) = &c.stable_service {
                role_hosts.push((h.clone(), false));
            }
            Some(TrafficPlan {
                stable: stable.image.clone(),
                canary,
                canary_weight: weight,
                header_routes,
                mirror_routes,
                role_hosts,
            })
        }
        Strategy::BlueGreen(b) => {
            let active = st.active.as_ref().unwrap_or(stable);
            let newest = st.current.as_ref().unwrap_or(stable);
            let preview = (newest.hash != active.hash).then(|| newest.image.clone());
            let mut role_hosts = vec![(b.active_service.clone(), false)];
            if let Some(p) = &b.preview_service {
                role_hosts.push((p.clone(), preview.is_some()));
            }
            Some(TrafficPlan {
                stable: active.image.clone(),
                canary: preview,
                canary_weight: Weight::ZERO,
                header_routes: Vec::new(),
                mirror_routes: Vec::new(),
                role_hosts,
            })
        }
    }
}

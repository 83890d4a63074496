//! Adapters between the crates: the proxy's stats as the control loop's
//! `MetricsSource`, the proxy's updater as its `TrafficRouter`, and the rollouts API on
//! the admin listener.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, StatusCode};
use weir_control::{Action, ControllerHandle, MetricsSource, Sample, TrafficPlan, TrafficRouter};
use weir_proxy::admin::{AdminBody, AdminExtension, AdminRequest, json, text};
use weir_proxy::{CellKey, HeaderRoute, MirrorRoute, Proxy, Role, RolloutTraffic};

/// The proxy's measurements, summed over the roles a revision was served under.
pub struct ProxyMetrics(pub Arc<Proxy>);

impl MetricsSource for ProxyMetrics {
    fn sample(&self, service: &str, revision: &str, window: Duration, quantile: f64) -> Sample {
        let secs = window.as_secs().max(1);
        let mut total: Option<weir_proxy::WindowSample> = None;
        for role in [Role::Stable, Role::Canary, Role::None] {
            let key = CellKey {
                service: Arc::from(service),
                role,
                revision: Arc::from(revision),
            };
            if let Some(w) = self.0.window(&key, secs) {
                match &mut total {
                    None => total = Some(w),
                    Some(t) => t.merge(&w),
                }
            }
        }
        match total {
            None => Sample {
                seconds: secs as f64,
                ..Sample::default()
            },
            Some(w) => Sample {
                requests: w.requests,
                failures: w.failures,
                latency: w.quantile(quantile),
                seconds: secs as f64,
            },
        }
    }
}

/// Traffic decisions to the proxy's single writer.
pub struct ProxyRouter(pub Arc<Proxy>);

impl TrafficRouter for ProxyRouter {
    fn apply<'a>(
        &'a self,
        rollout: &'a str,
        service: &'a str,
        plan: Option<TrafficPlan>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            let traffic = plan.map(|p| RolloutTraffic {
                service: service.to_owned(),
                stable: p.stable,
                canary: p.canary,
                canary_weight: p.canary_weight,
                header_routes: p
                    .header_routes
                    .into_iter()
                    .map(|(name, matches)| HeaderRoute { name, matches })
                    .collect(),
                mirror_routes: p
                    .mirror_routes
                    .into_iter()
                    .map(|(name, percentage, matches)| MirrorRoute {
                        name,
                        percentage,
                        matches,
                    })
                    .collect(),
                role_hosts: p
                    .role_hosts
                    .into_iter()
                    .map(|(h, canary)| (h, if canary { Role::Canary } else { Role::Stable }))
                    .collect(),
            });
            self.0.updater.set_traffic(rollout, traffic).await;
        })
    }
}

/// `/api/v1/rollouts...` on the admin listener.
pub struct RolloutsApi(pub ControllerHandle);

impl AdminExtension for RolloutsApi {
    fn handle(
        &self,
        req: &AdminRequest,
    ) -> Pin<Box<dyn Future<Output = Option<http::Response<AdminBody>>> + Send + '_>> {
        let method = req.method.clone();
        let path = req.path.clone();
        let query = req.query.clone();
        Box::pin(async move {
            let rest = path.strip_prefix("/api/v1/rollouts")?;
            let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
            Some(match (method, parts.as_slice()) {
                (Method::GET, []) => json(StatusCode::OK, &self.0.list().await),
                (Method::GET, [name]) => match self.0.get(name).await {
                    Some(v) => json(StatusCode::OK, &v),
                    None => not_found(name),
                },
                (Method::POST, [name, action]) => {
                    let action = match *action {
                        "promote"
                            if query
                                .get("full")
                                .is_some_and(|v| v == "true" || v.is_empty()) =>
                        {
                            Action::PromoteFull
                        }
                        "promote" => Action::Promote,
                        "abort" => Action::Abort,
                        "retry" => Action::Retry,
                        "pause" => Action::Pause,
                        "resume" => Action::Resume,
                        "undo" => {
                            let to = query
                                .get("toRevision")
                                .or_else(|| query.get("to-revision"))
                                .and_then(|v| v.parse().ok())
                                .filter(|n| *n > 0);
                            Action::Undo(to)
                        }
                        other => {
                            return Some(text(
                                StatusCode::NOT_FOUND,
                                format!(
                                    "no action {other:?}: use promote, abort, retry, pause, resume or undo\n"
                                ),
                            ));
                        }
                    };
                    match self.0.act(name, action).await {
                        Ok(v) => json(StatusCode::OK, &v),
                        Err(e) if e.starts_with("no rollout") => not_found(name),
                        Err(e) => json(StatusCode::CONFLICT, &serde_json::json!({ "error": e })),
                    }
                }
                (_, [_, _]) | (_, []) | (_, [_]) => {
                    text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
                }
                _ => text(StatusCode::NOT_FOUND, "not found\n"),
            })
        })
    }
}

fn not_found(name: &str) -> http::Response<AdminBody> {
    json(
        StatusCode::NOT_FOUND,
        &serde_json::json!({ "error": format!("no rollout named {name:?}") }),
    )
}

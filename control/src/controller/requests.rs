//! What the control loop answers between turns: actions, and the views of rollouts.

use super::*;

impl Controller {
    pub(super) async fn request(&mut self, req: Request, model: &Model) {
        match req {
            Request::Act {
                rollout,
                action,
                reply,
            } => {
                if self.following()
                    && let Some(spec) = model.argo.rollouts.get(&rollout)
                {
                    let spec = spec.clone();
                    self.ask_leader(rollout, action, &spec, reply).await;
                    return;
                }
                let result = match (
                    model.argo.rollouts.get(&rollout),
                    self.states.get_mut(&rollout),
                ) {
                    (Some(spec), Some(st)) => {
                        let now = self.clock.now();
                        match engine::act(st, spec, &action, now) {
                            Ok(events) => {
                                self.pending
                                    .extend(events.into_iter().map(|e| (rollout.clone(), e)));
                                let spec = spec.clone();
                                self.turn(model).await;
                                let view = self.view(&rollout, &spec);
                                match self.unsaved.get(&rollout) {
                                    // Applied, but a restart would lose it.
                                    Some(reason) => Err(ActionError::NotDurable {
                                        view: Box::new(view),
                                        reason: reason.clone(),
                                    }),
                                    None => Ok(view),
                                }
                            }
                            Err(e) => Err(ActionError::Refused(e)),
                        }
                    }
                    _ => Err(ActionError::NoRollout(rollout.clone())),
                };
                let _ = reply.send(result);
            }
            Request::Get { rollout, reply } => {
                let v = model
                    .argo
                    .rollouts
                    .get(&rollout)
                    .map(|spec| self.view(&rollout, spec));
                let _ = reply.send(v);
            }
            Request::History {
                rollout,
                points,
                step,
                reply,
            } => {
                let v = model
                    .argo
                    .rollouts
                    .contains_key(&rollout)
                    .then(|| self.history(&rollout, points, step));
                let _ = reply.send(v);
            }
            Request::List { reply } => {
                let v = model
                    .argo
                    .rollouts
                    .iter()
                    .map(|(name, spec)| self.view(name, spec))
                    .collect();
                let _ = reply.send(v);
            }
        }
    }

    pub(super) fn view(&self, name: &str, spec: &Rollout) -> RolloutView {
        let Some(st) = self.states.get(name) else {
            return status_view(&RolloutStatus::new(name), spec, None);
        };
        let mut v = status_view(st, spec, self.applied.get(name).and_then(Option::as_ref));
        // What each revision is doing now, over the last minute.
        let now = |rev: &Revision| {
            let s = self.providers.metrics.sample(
                name,
                &rev.image,
                Served::Any,
                Duration::from_secs(60),
                None,
                0.99,
            );
            let p = PointView::of(&s);
            RevisionStats {
                revision: rev.image.clone(),
                requests: p.requests,
                rps: p.rps,
                success_rate: p.success_rate,
                p99: p.p99,
            }
        };
        v.stats = Some(LiveStats {
            stable: st.stable.as_ref().map(now),
            canary: st.current.as_ref().filter(|_| st.updating()).map(now),
        });
        v
    }

    pub(super) fn history(&self, name: &str, points: usize, step: Duration) -> HistoryView {
        let mut v = HistoryView {
            step_seconds: step.as_secs_f64(),
            end: self.clock.now(),
            stable: None,
            canary: None,
        };
        let Some(st) = self.states.get(name) else {
            return v;
        };
        let series = |rev: &Revision| SeriesView {
            revision: rev.image.clone(),
            points: self
                .providers
                .metrics
                .series(name, &rev.image, points, step, 0.99)
                .iter()
                .map(PointView::of)
                .collect(),
        };
        v.stable = st.stable.as_ref().map(series);
        v.canary = st.current.as_ref().filter(|_| st.updating()).map(series);
        v
    }
}

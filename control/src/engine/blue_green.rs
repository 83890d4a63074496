//! The blue-green strategy: preview, pre-promotion analysis, the switch, post-promotion
//! analysis and the scale-down delay.

use super::*;

pub(super) fn blue_green(
    st: &mut RolloutStatus,
    spec: &Rollout,
    b: &BlueGreen,
    world: &World<'_>,
    events: &mut Vec<Event>,
) {
    let now = world.now;
    if st.active.is_none() {
        st.active = st.stable.clone();
    }
    if let Some((_, until)) = &st.previous_active
        && now >= *until
    {
        st.previous_active = None;
    }
    if !st.updating() {
        return;
    }
    let (Some(cur), Some(active), Some(stable)) =
        (st.current.clone(), st.active.clone(), st.stable.clone())
    else {
        return;
    };
    if st.aborted {
        // The active service stays on, or returns to, the stable revision.
        if active.hash != stable.hash {
            switch_back(st, events, now, &stable);
        }
        return;
    }
    let capacity = (world.has_endpoints)(&cur.image);

    // `promote --full`: pre- and post-promotion analysis are skipped (Argo's
    // skipPrePromotionAnalysisRun and skipPostPromotionAnalysisRun look at promoteFull);
    // the switch waits only for the new revision's endpoints.
    if st.promote_full {
        if !capacity {
            st.message = format!("waiting for endpoints running {} (preview)", cur.image);
            return;
        }
        for r in [st.pre_run.take(), st.post_run.take()] {
            st.archive(r, now);
        }
        st.controller_pause = false;
        if active.hash != cur.hash {
            st.previous_active = Some((active.clone(), after(now, b.scale_down_delay)));
            st.active = Some(cur.clone());
            push(
                events,
                st,
                now,
                Reason::ActiveServiceSwitched,
                format!(
                    "Active service switched to revision {} ({})",
                    cur.number, cur.image
                ),
            );
        }
        promote(st, spec, events, now);
        return;
    }

    if active.hash != cur.hash {
        // Before the switch: the preview runs the new revision.
        if !capacity {
            st.message = format!("waiting for endpoints running {} (preview)", cur.image);
            return;
        }
        // Pre-promotion analysis. While an Inconclusive run holds the pause, no new run
        // starts; promoting starts one (Argo's reconcilePrePromotionAnalysisRun).
        if let Some(aref) = &b.pre_promotion
            && st.pre_run.is_none()
            && !st.pre_promotion_passed
            && !st
                .pause_conditions
                .iter()
                .any(|p| p.reason == PauseReason::InconclusiveAnalysisRun)
        {
            st.pre_run = start_run(st, spec, aref, "-pre", world, events);
            if st.aborted {
                return;
            }
        }
        if let Some(run) = st.pre_run.clone()
            && run.is_done()
        {
            run_result_event(st, &run, events, now);
            match run.phase {
                Phase::Failed | Phase::Error => {
                    abort(
                        st,
                        events,
                        now,
                        &format!(
                            "Pre-promotion analysis phase {:?}: {}",
                            run.phase, run.message
                        ),
                    );
                    return;
                }
                Phase::Inconclusive => {
                    let r = st.pre_run.take();
                    st.archive(r, now);
                    add_pause(st, PauseReason::InconclusiveAnalysisRun, now, events);
                    return;
                }
                _ => {
                    let r = st.pre_run.take();
                    st.archive(r, now);
                    st.pre_promotion_passed = true;
                }
            }
        }
        // The switch needs the pre-promotion analysis to have passed, and the
        // controller's pause (autoPromotionEnabled: false, or autoPromotionSeconds)
        // starts only then: its clock counts from the pass (Argo's
        // reconcileBlueGreenPause and reconcileActiveService).
        if b.pre_promotion.is_some() && !st.pre_promotion_passed {
            return;
        }
        let auto_deadline = b
            .auto_promotion_enabled
            .then_some(b.auto_promotion_seconds)
            .flatten();
        let pause_needed = !b.auto_promotion_enabled || auto_deadline.is_some();
        if pause_needed && !st.controller_pause {
            add_pause(st, PauseReason::BlueGreenPause, now, events);
        }
        if let (Some(d), Some(p)) = (
            auto_deadline,
            st.pause_conditions
                .iter()
                .find(|p| p.reason == PauseReason::BlueGreenPause)
                .cloned(),
        ) && now >= after(p.start_time, d)
        {
            end_pause(st, PauseReason::BlueGreenPause, events, now);
        }
        if !st.pause_conditions.is_empty() || st.manual_pause || spec.paused {
            return;
        }
        // The switch: one snapshot swap.
        st.controller_pause = false;
        st.previous_active = Some((active.clone(), after(now, b.scale_down_delay)));
        st.active = Some(cur.clone());
        st.progress_since = now;
        st.deadline_exceeded = false;
        push(
            events,
            st,
            now,
            Reason::ActiveServiceSwitched,
            format!(
                "Active service switched to revision {} ({})",
                cur.number, cur.image
            ),
        );
        if b.post_promotion.is_none() {
            promote(st, spec, events, now);
            return;
        }
    }
    // After the switch: post-promotion analysis decides whether it becomes stable.
    if let Some(aref) = &b.post_promotion {
        if st.post_run.is_none()
            && !st
                .pause_conditions
                .iter()
                .any(|p| p.reason == PauseReason::InconclusiveAnalysisRun)
        {
            st.post_run = start_run(st, spec, aref, "-post", world, events);
            if st.aborted {
                st.active = Some(stable.clone());
                return;
            }
        }
        if let Some(run) = st.post_run.clone()
            && run.is_done()
        {
            run_result_event(st, &run, events, now);
            match run.phase {
                Phase::Successful => promote(st, spec, events, now),
                Phase::Failed | Phase::Error => {
                    abort(
                        st,
                        events,
                        now,
                        &format!(
                            "Post-promotion analysis phase {:?}: {}",
                            run.phase, run.message
                        ),
                    );
                    switch_back(st, events, now, &stable);
                }
                _ => {
                    let r = st.post_run.take();
                    st.archive(r, now);
                    add_pause(st, PauseReason::InconclusiveAnalysisRun, now, events);
                }
            }
        }
    } else if st.manual_pause || spec.paused || !st.pause_conditions.is_empty() {
    } else {
        promote(st, spec, events, now);
    }
}

/// The active service goes back to the stable revision.
fn switch_back(st: &mut RolloutStatus, events: &mut Vec<Event>, now: Ms, stable: &Revision) {
    st.active = Some(stable.clone());
    push(
        events,
        st,
        now,
        Reason::ActiveServiceSwitched,
        format!(
            "Active service switched back to revision {} ({})",
            stable.number, stable.image
        ),
    );
}

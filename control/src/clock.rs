//! The control loop's clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use crate::analysis::Ms;

/// The control loop's clock: wall-clock milliseconds that advance with tokio's time,
/// so that tests with paused time run long rollouts instantly.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    base_ms: Ms,
    base: Instant,
}

impl Clock {
    /// A clock starting at the system time now.
    pub fn system() -> Self {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as Ms)
            .unwrap_or(0);
        Clock {
            base_ms: ms,
            base: Instant::now(),
        }
    }

    /// Now, in milliseconds.
    pub fn now(&self) -> Ms {
        self.base_ms + self.base.elapsed().as_millis() as Ms
    }

    pub(crate) fn instant_at(&self, ms: Ms) -> Instant {
        self.base + Duration::from_millis(ms.saturating_sub(self.base_ms))
    }
}

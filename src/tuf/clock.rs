//! The clock metadata is signed by. An expiry is only as good as the wall clock it was
//! computed from: a clock that jumps a year ahead for a few seconds would sign metadata valid
//! for a year after it returns (freeze protection gone), and a clock days behind signs
//! metadata that is already expired. So before anything is signed, the wall clock is checked
//! against the monotonic clock (which nobody sets) and against the last signing time; a fault
//! refuses the signature, and is counted and exposed for alerts (`/metrics`).

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

/// Why the server will not sign now.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClockFault {
    /// The wall clock moved against the monotonic clock since the last check that agreed.
    #[error(
        "the wall clock jumped {drift} against the monotonic clock (more than tuf.max_clock_step = {tolerance}); refusing to sign metadata until it agrees again"
    )]
    Jump { drift: String, tolerance: String },
    /// The wall clock is earlier than a signature already made.
    #[error(
        "the wall clock ({now}) is behind the last metadata signing ({last}) by more than tuf.max_clock_step = {tolerance}; refusing to sign metadata that could already be expired"
    )]
    Behind {
        now: String,
        last: String,
        tolerance: String,
    },
}

/// The wall and monotonic times of the last check that found them in agreement.
static ANCHOR: Mutex<Option<(DateTime<Utc>, Instant)>> = Mutex::new(None);
/// Signatures refused for a clock fault since start.
static REFUSALS: AtomicU64 = AtomicU64::new(0);
/// Whether the last check found a fault (1) or not (0).
static FAULT: AtomicU64 = AtomicU64::new(0);
/// Wall clock minus monotonic expectation at the last check, in seconds.
static DRIFT: AtomicI64 = AtomicI64::new(0);

fn human(d: chrono::Duration) -> String {
    let sign = if d < chrono::Duration::zero() {
        "-"
    } else {
        "+"
    };
    let secs = d.num_seconds().unsigned_abs();
    format!(
        "{sign}{}",
        humantime::format_duration(Duration::from_secs(secs))
    )
}

/// Checks `now` (the wall-clock time about to be signed with) against the monotonic clock and
/// against `last_signed` (the newest signing time on record). A check that agrees becomes the
/// reference of the next one; a fault does not, so the server signs again as soon as the
/// clock is back where the monotonic clock says it should be.
pub fn check(
    now: DateTime<Utc>,
    last_signed: Option<DateTime<Utc>>,
    tolerance: Duration,
) -> Result<(), ClockFault> {
    let mono = Instant::now();
    let tol = chrono::Duration::from_std(tolerance).unwrap_or(chrono::Duration::MAX);
    let tol_s = humantime::format_duration(tolerance).to_string();
    let mut anchor = ANCHOR.lock().unwrap_or_else(|p| p.into_inner());
    let drift = match *anchor {
        Some((wall, at)) => {
            let elapsed = chrono::Duration::from_std(mono.saturating_duration_since(at))
                .unwrap_or(chrono::Duration::MAX);
            now - (wall + elapsed)
        }
        None => chrono::Duration::zero(),
    };
    DRIFT.store(drift.num_seconds(), Ordering::Relaxed);
    let fault = if drift.abs() > tol {
        Some(ClockFault::Jump {
            drift: human(drift),
            tolerance: tol_s,
        })
    } else {
        match last_signed {
            Some(last) if now < last - tol => Some(ClockFault::Behind {
                now: arca_keys::format_time(now),
                last: arca_keys::format_time(last),
                tolerance: tol_s,
            }),
            _ => None,
        }
    };
    match fault {
        Some(f) => {
            FAULT.store(1, Ordering::Relaxed);
            REFUSALS.fetch_add(1, Ordering::Relaxed);
            tracing::error!(fault = %f, "clock fault: not signing");
            Err(f)
        }
        None => {
            FAULT.store(0, Ordering::Relaxed);
            *anchor = Some((now, mono));
            Ok(())
        }
    }
}

/// The clock's state in Prometheus text format.
pub fn render_metrics() -> String {
    format!(
        "# HELP arca_clock_fault Whether the last clock check refused to sign (1): the wall clock jumped against the monotonic clock or is behind the last signing.\n\
         # TYPE arca_clock_fault gauge\narca_clock_fault {}\n\
         # HELP arca_clock_drift_seconds Wall clock minus where the monotonic clock puts it, at the last check.\n\
         # TYPE arca_clock_drift_seconds gauge\narca_clock_drift_seconds {}\n\
         # HELP arca_signing_refusals_total Metadata signatures refused for a clock fault.\n\
         # TYPE arca_signing_refusals_total counter\narca_signing_refusals_total {}\n",
        FAULT.load(Ordering::Relaxed),
        DRIFT.load(Ordering::Relaxed),
        REFUSALS.load(Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOLERANCE: Duration = Duration::from_secs(60);

    /// Other tests sign with the real clock in parallel: they re-anchor at the real time,
    /// which keeps every expectation below true.
    #[test]
    fn a_jump_is_refused_until_the_clock_returns_and_a_clock_behind_the_last_signing_too() {
        check(Utc::now(), None, TOLERANCE).unwrap();
        let ahead = Utc::now() + chrono::Duration::days(400);
        assert!(matches!(
            check(ahead, None, TOLERANCE),
            Err(ClockFault::Jump { .. })
        ));
        let back = Utc::now() - chrono::Duration::days(3);
        assert!(matches!(
            check(back, None, TOLERANCE),
            Err(ClockFault::Jump { .. })
        ));
        check(Utc::now(), None, TOLERANCE).unwrap();
        let later = Utc::now() + chrono::Duration::days(3);
        let e = check(Utc::now(), Some(later), TOLERANCE).unwrap_err();
        assert!(matches!(e, ClockFault::Behind { .. }), "{e}");
        // Within the tolerance is no fault.
        check(
            Utc::now(),
            Some(Utc::now() + chrono::Duration::seconds(30)),
            TOLERANCE,
        )
        .unwrap();
        assert!(render_metrics().contains("arca_signing_refusals_total "));
    }
}

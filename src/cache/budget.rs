//! The fill budget: how many new keys reads may create per second on this instance for
//! what strangers ask (`CACHE_FILL_BUDGET_PER_SEC`). Items that exist are bounded by the
//! catalog, but a list page exists per distinct filter (search strings, price ranges)
//! and an "absent" marker per id asked for that does not exist: without a budget,
//! anonymous reads would create keys at the rate they are sent. With it, such keys number
//! at most `budget x TTL` per instance (pages live `CACHE_TTL_LIST_SECS`, markers
//! `CACHE_TTL_ABSENT_SECS`). A page that already has a key is stored again freely (no new
//! key); past the budget a new page or marker is simply not stored: the answer is still
//! right, only the next read pays the database again.
use std::{sync::Mutex, time::Instant};

/// A token bucket of `per_sec` tokens, holding at most one second's worth.
pub struct FillBudget {
    per_sec: f64,
    /// Tokens left and when they were counted. A std Mutex: held for a few arithmetic
    /// steps, never across an await.
    bucket: Mutex<(f64, Instant)>,
}

impl FillBudget {
    pub fn new(per_sec: u32) -> Self {
        Self {
            per_sec: f64::from(per_sec),
            bucket: Mutex::new((f64::from(per_sec), Instant::now())),
        }
    }

    /// Takes a token for one new key; `false` when none is left (counted in
    /// `cache_fills_skipped_total`).
    pub fn take(&self, kind: &'static str) -> bool {
        let mut b = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        b.0 = (b.0 + now.duration_since(b.1).as_secs_f64() * self.per_sec).min(self.per_sec);
        b.1 = now;
        if b.0 >= 1.0 {
            b.0 -= 1.0;
            true
        } else {
            crate::metrics::cache_fill_skipped(kind);
            false
        }
    }
}

impl Default for FillBudget {
    /// No practical bound (tests and tools that build a cache by hand).
    fn default() -> Self {
        Self::new(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_of_tokens_then_refused_until_refilled() {
        let b = FillBudget::new(5);
        assert!((0..5).all(|_| b.take("list")));
        assert!(!b.take("list"));
        std::thread::sleep(std::time::Duration::from_millis(450));
        assert!(b.take("list") && b.take("list"), "about 2 refilled");
        assert!(!FillBudget::new(0).take("list"));
    }
}

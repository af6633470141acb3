//! The one poll-until-deadline loop: for conditions nothing notifies hutch
//! of (a socket appearing, a lock released, a guest powering off).

use std::future::Future;
use std::time::{Duration, Instant};

/// Calls `check` every `every` until it returns `Some`, and returns that; or
/// `None` once `timeout` has passed (`check` runs at least once, and once
/// more at the deadline).
pub fn poll_until<T>(timeout: Duration, every: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(done) = check() {
            return Some(done);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::sleep(every.min(deadline - now));
    }
}

/// [`poll_until`] for async checks, sleeping without blocking the runtime.
pub async fn poll_until_async<T, F: Future<Output = Option<T>>>(
    timeout: Duration,
    every: Duration,
    mut check: impl FnMut() -> F,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(done) = check().await {
            return Some(done);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        tokio::time::sleep(every.min(deadline - now)).await;
    }
}

/// Runs `attempt` every `every` until it succeeds, or until `timeout` has
/// passed; then the last attempt's error.
pub async fn retry_until_async<T, E, F: Future<Output = Result<T, E>>>(
    timeout: Duration,
    every: Duration,
    mut attempt: impl FnMut() -> F,
) -> Result<T, E> {
    let deadline = Instant::now() + timeout;
    loop {
        let error = match attempt().await {
            Ok(done) => return Ok(done),
            Err(error) => error,
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(error);
        }
        tokio::time::sleep(every.min(deadline - now)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_first_answer_or_none_at_the_deadline() {
        let mut calls = 0;
        assert_eq!(
            poll_until(Duration::from_secs(10), Duration::ZERO, || {
                calls += 1;
                (calls == 3).then_some(calls)
            }),
            Some(3)
        );
        let mut calls = 0;
        assert_eq!(
            poll_until(Duration::ZERO, Duration::from_secs(1), || {
                calls += 1;
                None::<()>
            }),
            None
        );
        assert_eq!(calls, 1);
    }
}

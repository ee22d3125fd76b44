//! The task that answers `llm_analyze` requests: at most `max_concurrent` calls in flight,
//! at most `calls_per_minute` started per minute, and a circuit breaker that stops calling
//! after `breaker_failures` failed calls in a row and lets one trial call through after
//! `breaker_cooldown_ms`. A failed call is tried again (at the back of the queue) until
//! `max_attempts`; then its record says `error` with the reason.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::sync::Semaphore;

use super::{update_records, ChatClient, LlmRecord, LlmRequest, LlmStatus};
use crate::config::LlmConfig;
use crate::metrics::Metrics;
use crate::state::Store;

/// The circuit breaker's state.
#[derive(Debug, Default)]
struct Breaker {
    failures_in_a_row: u32,
    open_until: Option<Instant>,
    /// The one call let through after the cooldown, while it runs.
    trial: bool,
}

impl Breaker {
    /// How long to wait before calling; zero: call now (taking the trial when half-open).
    fn wait(&mut self, now: Instant) -> Duration {
        match self.open_until {
            Some(until) if until > now => until - now,
            Some(_) if self.trial => Duration::from_millis(50),
            Some(_) => {
                self.trial = true;
                Duration::ZERO
            }
            None => Duration::ZERO,
        }
    }

    /// Records a call's outcome; returns whether the breaker is open after it.
    fn record(&mut self, ok: bool, config: &LlmConfig, now: Instant) -> bool {
        self.trial = false;
        if ok {
            self.failures_in_a_row = 0;
            self.open_until = None;
            return false;
        }
        self.failures_in_a_row += 1;
        if self.failures_in_a_row >= config.breaker_failures.max(1) {
            self.open_until = Some(now + Duration::from_millis(config.breaker_cooldown_ms));
            return true;
        }
        false
    }
}

pub(super) struct Worker {
    config: LlmConfig,
    client: ChatClient,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    breaker: Arc<Mutex<Breaker>>,
}

impl Worker {
    pub(super) fn new(
        config: LlmConfig,
        client: ChatClient,
        store: Arc<Store>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            config,
            client,
            store,
            metrics,
            breaker: Arc::default(),
        }
    }

    /// Answers requests until the queue closes. Retries go back through `requeue`.
    pub(super) async fn run(
        self,
        mut queue: UnboundedReceiver<LlmRequest>,
        requeue: UnboundedSender<LlmRequest>,
    ) {
        let this = Arc::new(self);
        let slots = Arc::new(Semaphore::new(this.config.max_concurrent.max(1)));
        let spacing =
            Duration::from_secs_f64(60.0 / f64::from(this.config.calls_per_minute.max(1)));
        let mut next_start = tokio::time::Instant::now();
        while let Some(request) = queue.recv().await {
            this.metrics.llm_queued.dec();
            // The slot first: the breaker is asked right before the call, after every call
            // in flight has told it how it went.
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            loop {
                let wait = this.breaker.lock().wait(Instant::now());
                if wait.is_zero() {
                    break;
                }
                this.metrics.llm_breaker_open.set(1);
                tokio::time::sleep(wait).await;
            }
            this.metrics.llm_breaker_open.set(0);
            tokio::time::sleep_until(next_start).await;
            next_start = next_start.max(tokio::time::Instant::now()) + spacing;
            let (this, requeue) = (this.clone(), requeue.clone());
            tokio::spawn(async move {
                if let Some(retry) = this.call(request).await {
                    this.metrics.llm_queued.inc();
                    let _ = requeue.send(retry);
                }
                drop(slot);
            });
        }
    }

    /// Makes one call and stores its outcome; returns the attempt to make again, if any.
    async fn call(&self, mut request: LlmRequest) -> Option<LlmRequest> {
        let started = Instant::now();
        let result = self.client.ask(&request.prompt).await;
        let took = started.elapsed();
        request.made += 1;
        self.metrics.llm_call_seconds.observe(took.as_secs_f64());
        let ok = result.is_ok();
        self.metrics
            .llm_calls
            .with_label_values(&[if ok { "ok" } else { "failed" }])
            .inc();
        let opened = self.breaker.lock().record(ok, &self.config, Instant::now());
        if opened {
            tracing::warn!(
                failures = self.config.breaker_failures,
                cooldown_ms = self.config.breaker_cooldown_ms,
                "llm_analyze circuit breaker open: no calls until the cooldown ends"
            );
        }
        let again = !ok && request.made < self.config.max_attempts.max(1);
        let now_ms = chrono::Utc::now().timestamp_millis();
        let made = request.made;
        let change = move |record: &mut LlmRecord| {
            record.attempts = made;
            match &result {
                Ok(answer) => {
                    record.status = LlmStatus::Ok;
                    record.answer = Some(answer.clone());
                    record.error = None;
                    record.latency_ms = Some(took.as_millis() as u64);
                    record.answered_at_ms = Some(now_ms);
                }
                Err(e) => {
                    record.error = Some(e.to_string());
                    if !again {
                        record.status = LlmStatus::Error;
                        record.answered_at_ms = Some(now_ms);
                    }
                }
            }
        };
        let store = self.store.clone();
        let requests = vec![request.clone()];
        let written =
            tokio::task::spawn_blocking(move || update_records(&store, &requests, change)).await;
        if let Ok(Err(e)) | Err(e) =
            written.map_err(|e| crate::state::StateError::Storage(e.to_string()))
        {
            tracing::error!(error = %e, "cannot store an llm_analyze answer");
        }
        again.then_some(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> LlmConfig {
        toml::from_str(
            "url = 'http://127.0.0.1:1/v1/chat/completions'\nmodel = 'm'\nbreaker_failures = 2\nbreaker_cooldown_ms = 1000",
        )
        .unwrap()
    }

    #[test]
    fn breaker_opens_after_failures_in_a_row_and_lets_one_trial_through() {
        let config = config();
        let mut b = Breaker::default();
        let t0 = Instant::now();
        assert_eq!(b.wait(t0), Duration::ZERO);
        assert!(!b.record(false, &config, t0));
        assert!(!b.record(true, &config, t0), "a success resets the count");
        assert!(!b.record(false, &config, t0));
        assert!(
            b.record(false, &config, t0),
            "two failures in a row open it"
        );
        assert!(b.wait(t0) > Duration::from_millis(900));
        let later = t0 + Duration::from_millis(1001);
        assert_eq!(b.wait(later), Duration::ZERO, "the trial call");
        assert!(b.wait(later) > Duration::ZERO, "others wait for the trial");
        assert!(
            b.record(false, &config, later),
            "a failed trial opens it again"
        );
        let later = later + Duration::from_millis(1001);
        assert_eq!(b.wait(later), Duration::ZERO);
        assert!(!b.record(true, &config, later));
        assert_eq!(b.wait(later), Duration::ZERO, "closed after a good trial");
    }
}

//! Bounds on HTTP submissions under abuse: a per-tenant rate (governor's
//! keyed token buckets), a per-tenant backlog and a process-wide bound on
//! tasks taken in and not yet final (`limits.submit_rate_per_s`,
//! `submit_burst`, `max_queued_per_tenant`, `max_queued`).
//!
//! A submission is checked as a whole before anything of it is admitted:
//! over the process bound it is `503`, over a tenant's rate or backlog
//! `429`, each with `Retry-After`. Brokers meet the process bound too: their
//! consumers pause while the ingress is saturated (see
//! [`crate::ingress::Ingress::is_saturated`]).

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use tidewater_operators::validate::ValidationLimits;

use super::responses::error;
use crate::ingress::Ingress;
use crate::stats::PipelineStats;

/// Why a submission was not taken now, and when to try again.
#[derive(Debug)]
pub struct Refusal {
    status: StatusCode,
    code: &'static str,
    reason: String,
    retry_after_s: Option<u64>,
}

impl Refusal {
    fn new(
        status: StatusCode,
        code: &'static str,
        reason: String,
        retry_after_s: Option<u64>,
    ) -> Self {
        Refusal {
            status,
            code,
            reason,
            retry_after_s,
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut answer = error(self.status, self.code, self.reason);
        if let Some(value) = self
            .retry_after_s
            .and_then(|s| HeaderValue::from_str(&s.to_string()).ok())
        {
            answer.headers_mut().insert(header::RETRY_AFTER, value);
        }
        answer
    }
}

/// The bounds, with what they measure.
pub struct SubmitLimits {
    rate: Option<DefaultKeyedRateLimiter<String>>,
    max_per_tenant: usize,
    ingress: Ingress,
    stats: Arc<PipelineStats>,
}

impl SubmitLimits {
    /// The bounds of `limits` over this process's `ingress` and `stats`.
    pub fn new(limits: &ValidationLimits, ingress: Ingress, stats: Arc<PipelineStats>) -> Self {
        let rate = NonZeroU32::new(limits.submit_rate_per_s).map(|per_s| {
            let burst = NonZeroU32::new(limits.submit_burst).unwrap_or(per_s);
            RateLimiter::keyed(Quota::per_second(per_s).allow_burst(burst))
        });
        SubmitLimits {
            rate,
            max_per_tenant: limits.max_queued_per_tenant,
            ingress,
            stats,
        }
    }

    /// Whether `count` more tasks, of the tenants and counts given, may be
    /// taken in now; the answer to give if not.
    pub fn check(&self, by_tenant: &BTreeMap<String, usize>) -> Result<(), Refusal> {
        let count: usize = by_tenant.values().sum();
        if count == 0 {
            return Ok(());
        }
        if self.ingress.would_saturate(count) {
            return Err(Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                format!(
                    "this process holds {} tasks not yet final, the most limits.max_queued allows; retry later",
                    self.ingress.in_flight()
                ),
                Some(1),
            ));
        }
        if self.max_per_tenant > 0 {
            for (tenant, n) in by_tenant {
                let backlog = self.stats.backlog.count(tenant);
                if backlog + n > self.max_per_tenant {
                    return Err(Refusal::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        "tenant_backlog",
                        format!(
                            "tenant {tenant:?} has {backlog} tasks not yet final; limits.max_queued_per_tenant is {}",
                            self.max_per_tenant
                        ),
                        Some(1),
                    ));
                }
            }
        }
        let Some(rate) = &self.rate else {
            return Ok(());
        };
        for (tenant, n) in by_tenant {
            let n =
                NonZeroU32::new(u32::try_from(*n).unwrap_or(u32::MAX)).unwrap_or(NonZeroU32::MIN);
            match rate.check_key_n(tenant, n) {
                Ok(Ok(())) => {}
                Ok(Err(not_until)) => {
                    let wait = not_until.wait_time_from(DefaultClock::default().now());
                    return Err(Refusal::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        "rate_limited",
                        format!("tenant {tenant:?} submits faster than limits.submit_rate_per_s"),
                        Some(wait.as_secs_f64().ceil().max(1.0) as u64),
                    ));
                }
                Err(insufficient) => {
                    return Err(Refusal::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        "batch_too_large",
                        format!(
                            "a batch of {n} tasks is more than tenant {tenant:?} may submit at once ({insufficient}); split it"
                        ),
                        None,
                    ))
                }
            }
        }
        Ok(())
    }
}

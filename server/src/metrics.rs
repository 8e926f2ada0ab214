//! Prometheus metrics: decisions by outcome, decision latency, ledger and auth failures.

use std::sync::Mutex;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    code: &'static str,
}

/// The server's metrics and the registry that renders them.
#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    decisions: Family<DecisionLabels, Counter>,
    decision_seconds: Histogram,
    ledger_failures: Counter,
    auth_failures: Family<CodeLabels, Counter>,
    policy_reloads: Family<CodeLabels, Counter>,
    ledger_size: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let decisions = Family::<DecisionLabels, Counter>::default();
        // 50 µs to ~1.6 s.
        let decision_seconds = Histogram::new(exponential_buckets(0.000_05, 2.0, 16));
        let ledger_failures = Counter::default();
        let auth_failures = Family::<CodeLabels, Counter>::default();
        let policy_reloads = Family::<CodeLabels, Counter>::default();
        let ledger_size = Gauge::default();
        let mut registry = Registry::with_prefix("writ");
        registry.register(
            "decisions",
            "Decisions answered, by outcome",
            decisions.clone(),
        );
        registry.register(
            "decision_seconds",
            "Time from request to recorded answer of one decision",
            decision_seconds.clone(),
        );
        registry.register(
            "ledger_failures",
            "Appends the ledger could not make durable",
            ledger_failures.clone(),
        );
        registry.register(
            "auth_failures",
            "Refused bearer tokens, by error code",
            auth_failures.clone(),
        );
        registry.register(
            "policy_reloads",
            "Policy reloads, by result",
            policy_reloads.clone(),
        );
        registry.register(
            "ledger_size",
            "Entries in the ledger at the last recorded answer",
            ledger_size.clone(),
        );
        Self {
            registry: Mutex::new(registry),
            decisions,
            decision_seconds,
            ledger_failures,
            auth_failures,
            policy_reloads,
            ledger_size,
        }
    }

    pub fn decision(&self, allow: bool, seconds: f64, ledger_size: u64) {
        let decision = if allow { "allow" } else { "deny" };
        self.decisions
            .get_or_create(&DecisionLabels { decision })
            .inc();
        self.decision_seconds.observe(seconds);
        self.ledger_size
            .set(i64::try_from(ledger_size).unwrap_or(i64::MAX));
    }

    pub fn ledger_failure(&self) {
        self.ledger_failures.inc();
    }

    pub fn auth_failure(&self, code: &'static str) {
        self.auth_failures.get_or_create(&CodeLabels { code }).inc();
    }

    pub fn policy_reload(&self, ok: bool) {
        let code = if ok { "loaded" } else { "refused" };
        self.policy_reloads
            .get_or_create(&CodeLabels { code })
            .inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let registry = self
            .registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut text = String::new();
        if encode(&mut text, &registry).is_err() {
            text.clear();
        }
        text
    }
}

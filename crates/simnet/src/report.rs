//! What a run reports: per step, per expectation, totals and a verdict.
//! Everything in it derives from virtual time and the seed, so the same run
//! gives the same report (wall time is printed apart).

use std::fmt::Write as _;

use serde::Serialize;

/// The result of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The scenario's name.
    pub scenario: String,
    /// The seed it ran with.
    pub seed: u64,
    /// Peers simulated.
    pub peers: usize,
    /// "pass" or "fail".
    pub verdict: &'static str,
    /// Virtual time at the end.
    pub virtual_time: String,
    /// Each step of the timeline, in order.
    pub steps: Vec<StepReport>,
    /// Each expectation, in order.
    pub expectations: Vec<ExpectReport>,
    /// Bytes moved and connections made.
    pub totals: Totals,
    /// Why the run failed, one line each.
    pub failures: Vec<String>,
    /// BLAKE3 of the event log (see `--events`).
    pub events_hash: String,
}

/// One step.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    /// Its id.
    pub id: String,
    /// What it did, in words.
    pub action: String,
    /// Virtual start time, if it started.
    pub start: Option<String>,
    /// Virtual end time, if it ended.
    pub end: Option<String>,
    /// "ok", "error: …", "not started", "cancelled by a crash", "running".
    pub result: String,
    /// What was expected, if anything.
    pub expected: Option<String>,
    /// Whether the result matched the expectation (true without one).
    pub met: bool,
    /// Per peer involved: bytes moved and what happened.
    pub parts: Vec<Part>,
    /// For a step of a group of peers: the median time they took, and the
    /// time 99 in 100 of them took at most.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub took_p50_p99: Option<(String, String)>,
}

/// One peer's share of a step.
#[derive(Debug, Clone, Serialize)]
pub struct Part {
    /// The peer.
    pub peer: String,
    /// Bytes received from it (download) or sent to it (upload).
    pub bytes: u64,
    /// "ok", a detail ("stored", "unchanged", "3 files") or "error: …".
    pub result: String,
    /// When this peer's part ended, where a group of peers did the step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended: Option<String>,
}

/// One expectation.
#[derive(Debug, Clone, Serialize)]
pub struct ExpectReport {
    /// The expectation, in words.
    pub what: String,
    /// Whether it held.
    pub held: bool,
    /// When it was decided.
    pub at: String,
    /// Why not, if it did not hold.
    pub detail: Option<String>,
}

/// Totals over the run.
#[derive(Debug, Clone, Serialize)]
pub struct Totals {
    /// Bytes all peers sent.
    pub bytes_sent: u64,
    /// Connections made.
    pub connections: u64,
    /// Each index's traffic: (peer, bytes sent, bytes received).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub indexes: Vec<(String, u64, u64)>,
}

impl Report {
    /// Whether every expectation held.
    pub fn passed(&self) -> bool {
        self.verdict == "pass"
    }

    /// The report for people.
    pub fn human(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "scenario: {} (seed {}, {} peers)", self.scenario, self.seed, self.peers);
        for step in &self.steps {
            let when = match (&step.start, &step.end) {
                (Some(a), Some(b)) => format!("{a} → {b}"),
                (Some(a), None) => format!("{a} → …"),
                _ => "never".to_string(),
            };
            let mark = if step.met { "" } else { "  ✗" };
            let _ = writeln!(s, "step {} [{when}] {}: {}{mark}", step.id, step.action, step.result);
            if let Some(e) = &step.expected
                && !step.met
            {
                let _ = writeln!(s, "    expected {e}");
            }
            for p in &step.parts {
                let at = p.ended.as_ref().map(|t| format!(" at {t}")).unwrap_or_default();
                let _ = writeln!(s, "    {}: {} ({} bytes){at}", p.peer, p.result, p.bytes);
            }
            if let Some((p50, p99)) = &step.took_p50_p99 {
                let _ = writeln!(s, "    took p50 {p50}, p99 {p99}");
            }
        }
        for e in &self.expectations {
            let mark = if e.held { "held" } else { "FAILED" };
            let _ = writeln!(s, "expect {} at {}: {mark}", e.what, e.at);
            if let Some(d) = &e.detail {
                let _ = writeln!(s, "    {d}");
            }
        }
        let c = self.totals.connections;
        let _ = writeln!(
            s,
            "totals: {} bytes sent, {c} connection{}, virtual time {}",
            self.totals.bytes_sent,
            if c == 1 { "" } else { "s" },
            self.virtual_time
        );
        for (name, sent, received) in &self.totals.indexes {
            let share = (sent + received) as f64 * 100.0 / self.totals.bytes_sent.max(1) as f64;
            let _ = writeln!(s, "index {name}: sent {sent}, received {received} bytes, {share:.3} % of all bytes sent");
        }
        for f in &self.failures {
            let _ = writeln!(s, "failure: {f}");
        }
        let _ = writeln!(s, "events: blake3 {}", self.events_hash);
        let _ = writeln!(s, "verdict: {}", self.verdict);
        s
    }
}

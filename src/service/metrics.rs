//! Counters the server exports at `/metrics` beside the expiry gauges: requests by status
//! class, bytes received and served, promotion outcomes. Plain atomics: cheap on every request.

use std::sync::atomic::{AtomicU64, Ordering};

/// The server's counters (monotonic since start).
#[derive(Debug, Default)]
pub struct Counters {
    /// HTTP responses by status class: 2xx, 3xx, 4xx, 5xx.
    pub responses: [AtomicU64; 4],
    /// Artifact bytes received and stored (uploads that were staged).
    pub upload_bytes: AtomicU64,
    /// Target bytes sent to clients (by the length announced).
    pub download_bytes: AtomicU64,
    pub promotions_ok: AtomicU64,
    pub promotions_refused: AtomicU64,
    /// Agent reports received.
    pub reports: AtomicU64,
}

impl Counters {
    pub fn response(&self, status: u16) {
        let class = match status {
            200..=299 => 0,
            300..=399 => 1,
            400..=499 => 2,
            _ => 3,
        };
        self.responses[class].fetch_add(1, Ordering::Relaxed);
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// The counters in Prometheus text format.
    pub fn render(&self) -> String {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::new();
        out.push_str("# HELP arca_http_responses_total HTTP responses by status class.\n# TYPE arca_http_responses_total counter\n");
        for (i, class) in ["2xx", "3xx", "4xx", "5xx"].iter().enumerate() {
            out.push_str(&format!(
                "arca_http_responses_total{{class=\"{class}\"}} {}\n",
                g(&self.responses[i])
            ));
        }
        out.push_str("# HELP arca_upload_bytes_total Artifact bytes received and stored.\n# TYPE arca_upload_bytes_total counter\n");
        out.push_str(&format!(
            "arca_upload_bytes_total {}\n",
            g(&self.upload_bytes)
        ));
        out.push_str("# HELP arca_download_bytes_total Target bytes served.\n# TYPE arca_download_bytes_total counter\n");
        out.push_str(&format!(
            "arca_download_bytes_total {}\n",
            g(&self.download_bytes)
        ));
        out.push_str("# HELP arca_promotions_total Promotions by outcome.\n# TYPE arca_promotions_total counter\n");
        out.push_str(&format!(
            "arca_promotions_total{{outcome=\"promoted\"}} {}\n",
            g(&self.promotions_ok)
        ));
        out.push_str(&format!(
            "arca_promotions_total{{outcome=\"refused\"}} {}\n",
            g(&self.promotions_refused)
        ));
        out.push_str("# HELP arca_reports_total Agent reports received.\n# TYPE arca_reports_total counter\n");
        out.push_str(&format!("arca_reports_total {}\n", g(&self.reports)));
        out
    }
}

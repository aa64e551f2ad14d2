//! The collectors shared by `/metrics` and the shipper. Scrapes are taken
//! one at a time: the runner skips a collector whose previous run is still
//! going, so two overlapping scrapes would each lose the other's slow
//! collectors, and a shipped tick would have holes.

use crate::collector::Scraper;
use crate::snapshot::Snapshot;

/// A [`Scraper`] whose scrapes never overlap.
#[derive(Debug)]
pub struct SharedScraper {
    scraper: Scraper,
    turn: tokio::sync::Mutex<()>,
}

impl SharedScraper {
    /// Wraps `scraper`.
    pub fn new(scraper: Scraper) -> Self {
        Self {
            scraper,
            turn: tokio::sync::Mutex::new(()),
        }
    }

    /// The wrapped scraper.
    pub fn inner(&self) -> &Scraper {
        &self.scraper
    }

    /// Waits for any scrape in progress, then scrapes.
    pub async fn scrape(&self) -> Snapshot {
        let _turn = self.turn.lock().await;
        self.scraper.scrape().await
    }
}

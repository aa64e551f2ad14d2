//! `fan`: the BMC's fan mode and zone duties, the controller's own state
//! (manual override, guard trips) and the fan policy's decisions per zone.
//! A scrape only reads: fan safety and the policy run in their own task
//! (`fans::safety`), so turning this collector off hides the gauges and
//! nothing else. Boards without a verified fan command set get no BMC
//! traffic and no fan series.

use std::path::Path;
use std::sync::Arc;

use super::{CollectError, Collector, Services};
use crate::fans::FanController;
use crate::snapshot::Snapshot;

/// Flag and label name.
pub const NAME: &str = "fan";

/// The collector.
#[derive(Debug)]
pub struct FanCollector {
    controller: Arc<FanController>,
}

/// Builds the collector around the exporter's fan controller.
pub fn new(services: &Services) -> FanCollector {
    FanCollector {
        controller: Arc::clone(&services.fans),
    }
}

impl Collector for FanCollector {
    fn update(&self, out: &mut Snapshot) -> Result<(), CollectError> {
        if !self.controller.supported_board() {
            return Ok(());
        }
        let refreshed = self.controller.status();
        self.controller.gauges().write_to(out);
        refreshed
            .map(drop)
            .map_err(|err| CollectError::parse(Path::new("ipmitool"), err.to_string()))
    }
}

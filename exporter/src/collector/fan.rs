//! `fan`: the BMC's fan mode and zone duties, and the controller's own
//! state (manual override, guard trips). Each collection also maintains a
//! manual duty: reverting it when due, re-asserting it when the BMC drifted
//! out of full mode, and tripping the thermal guard. Boards without a
//! verified fan command set get no BMC traffic and no fan series.

use std::path::Path;
use std::sync::Arc;

use super::{CollectError, Collector, Services};
use crate::fans::FanController;
use crate::snapshot::Snapshot;

/// Flag and label name.
pub const NAME: &str = "fan";

/// The collector.
#[derive(Debug)]
pub struct Fan {
    controller: Arc<FanController>,
}

/// Builds the collector around the exporter's fan controller.
pub fn new(services: &Services) -> Fan {
    Fan {
        controller: Arc::clone(&services.fans),
    }
}

impl Collector for Fan {
    fn update(&self, out: &mut Snapshot) -> Result<(), CollectError> {
        if !self.controller.supported_board() {
            return Ok(());
        }
        self.controller.maintain();
        let refreshed = self.controller.status();
        self.controller.gauges().write_to(out);
        refreshed
            .map(drop)
            .map_err(|err| CollectError::parse(Path::new("ipmitool"), err.to_string()))
    }
}

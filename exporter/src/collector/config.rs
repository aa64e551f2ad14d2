//! `config`: `dcmon_config_info{version,hash}`, the runtime configuration
//! a `config_update` put in force (nothing while none is).

use std::sync::{Arc, OnceLock};

use super::{CollectError, Collector, Services};
use crate::runtime_config::RuntimeStore;
use crate::snapshot::Snapshot;

/// Flag and label name.
pub const NAME: &str = "config";

/// The collector.
#[derive(Debug)]
pub struct ConfigCollector {
    store: Arc<OnceLock<Arc<RuntimeStore>>>,
}

/// Builds the collector on the exporter's runtime configuration store.
pub fn new(services: &Services) -> ConfigCollector {
    ConfigCollector {
        store: Arc::clone(&services.runtime),
    }
}

impl Collector for ConfigCollector {
    fn update(&self, out: &mut Snapshot) -> Result<(), CollectError> {
        if let Some(store) = self.store.get() {
            store.write_to(out);
        }
        Ok(())
    }
}

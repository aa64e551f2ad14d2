//! Child processes that die with the test that started them.

use std::ops::{Deref, DerefMut};
use std::process::Child;

/// A child process killed and reaped when dropped, so a failing assertion
/// (which unwinds past any explicit stop) leaves no server running and no
/// zombie behind. Derefs to the [`Child`] for everything else.
#[derive(Debug)]
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // Errors are expected and harmless: the process may have exited or
        // been reaped already.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Deref for KillOnDrop {
    type Target = Child;

    fn deref(&self) -> &Child {
        &self.0
    }
}

impl DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

//! Which board this is, and whether dcmon knows its fan commands. The raw
//! bytes differ between Supermicro generations (X9 uses other commands and
//! a 0–255 scale; X14/H14 need a per-zone manual mode first), so fan
//! actions run only on the family whose bytes are verified, X10–X13 and
//! H10–H13, and are refused, naming the board, everywhere else.

use std::path::Path;

use serde::Serialize;

/// The board, from DMI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Board {
    /// `board_vendor`, e.g. `Supermicro`.
    pub vendor: String,
    /// `board_name`, e.g. `X11DPG-OT-CPU`.
    pub name: String,
}

impl Board {
    /// Reads DMI under `sysfs` (`class/dmi/id/board_{vendor,name}`).
    pub fn detect(sysfs: &Path) -> Board {
        let read = |file: &str| {
            std::fs::read_to_string(sysfs.join("class/dmi/id").join(file))
                .map(|s| s.trim().to_owned())
                .unwrap_or_default()
        };
        Board {
            vendor: read("board_vendor"),
            name: read("board_name"),
        }
    }

    /// Supermicro generation: `X11DPG-OT-CPU` → (`X`, 11).
    fn generation(&self) -> Option<(char, u32)> {
        let mut chars = self.name.chars();
        let series = chars.next()?.to_ascii_uppercase();
        let digits: String = chars.take_while(char::is_ascii_digit).collect();
        Some((series, digits.parse().ok()?))
    }

    /// `Ok` where the X10–X13/H10–H13 raw commands are verified; otherwise
    /// why fan control is refused.
    pub fn fan_support(&self) -> Result<(), String> {
        let described = format!(
            "{} {}",
            if self.vendor.is_empty() {
                "unknown vendor"
            } else {
                &self.vendor
            },
            if self.name.is_empty() {
                "unknown board"
            } else {
                &self.name
            }
        );
        if !self.vendor.to_ascii_lowercase().contains("supermicro") {
            return Err(format!(
                "fan control is only verified on Supermicro X10-X13/H10-H13 boards; this is {described}"
            ));
        }
        match self.generation() {
            Some(('X' | 'H', 10..=13)) => Ok(()),
            Some(('X', 9)) => Err(format!(
                "{described} is an X9 board: its fan commands use other bytes and a 0-255 scale, which dcmon does not send"
            )),
            Some(('X' | 'H', 14..)) => Err(format!(
                "{described} is an X14/H14 board: it needs a per-zone manual mode that dcmon has not verified"
            )),
            _ => Err(format!(
                "{described} has no verified fan command set in dcmon"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn board(vendor: &str, name: &str) -> Board {
        Board {
            vendor: vendor.into(),
            name: name.into(),
        }
    }

    #[test]
    fn only_the_verified_generations_are_supported() {
        for name in [
            "X10DRi",
            "X11DPG-OT-CPU",
            "X12DPG-QT6",
            "X13SAE-F",
            "H12SSL-i",
            "H13SSL-N",
        ] {
            assert_eq!(board("Supermicro", name).fan_support(), Ok(()), "{name}");
        }
        let refused = |vendor, name| board(vendor, name).fan_support().unwrap_err();
        assert!(refused("Supermicro", "X9DRi-LN4+").contains("X9DRi-LN4+ is an X9 board"));
        assert!(refused("Supermicro", "X14DBM-AP").contains("X14/H14"));
        assert!(refused("Supermicro", "H14SSL-N").contains("H14SSL-N"));
        assert!(refused("Dell Inc.", "0JP31P").contains("Dell Inc. 0JP31P"));
        assert!(refused("", "").contains("unknown vendor unknown board"));
    }

    #[test]
    fn detects_from_dmi() {
        let dir = tempfile::tempdir().unwrap();
        let dmi = dir.path().join("class/dmi/id");
        std::fs::create_dir_all(&dmi).unwrap();
        std::fs::write(dmi.join("board_vendor"), "Supermicro\n").unwrap();
        std::fs::write(dmi.join("board_name"), "X11DPG-OT-CPU\n").unwrap();
        assert_eq!(
            Board::detect(dir.path()),
            board("Supermicro", "X11DPG-OT-CPU")
        );
    }
}

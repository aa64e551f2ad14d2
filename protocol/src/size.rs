//! Sizes in bytes as flags spell them (`256MiB`, `64MB`, `1024`), as used
//! by `--remote-write.spool.max-bytes` and `--query.cache-size`.

/// A size in bytes: a whole number with an optional unit (`B`, `KB`, `MB`,
/// `GB`, `KiB`, `MiB`, `GiB`).
pub fn parse_bytes(input: &str) -> Result<u64, String> {
    let trimmed = input.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("invalid size {input:?}: expected e.g. 256MiB"))?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        other => return Err(format!("invalid size {input:?}: unknown unit {other:?}")),
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("size {input:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_decimal_and_binary_units() {
        assert_eq!(parse_bytes("1024"), Ok(1024));
        assert_eq!(parse_bytes("0"), Ok(0));
        assert_eq!(parse_bytes("256MiB"), Ok(256 << 20));
        assert_eq!(parse_bytes("2GB"), Ok(2_000_000_000));
        assert_eq!(parse_bytes("64 KiB"), Ok(64 << 10));
        assert!(parse_bytes("12 parsecs").is_err());
        assert!(parse_bytes("MiB").is_err());
        assert!(parse_bytes("99999999999GiB").is_err());
    }
}

//! Calendar functions (`hour`, `day_of_week`, `days_in_month`, …): fields
//! of a Unix time in UTC.

/// Whether `name` is a calendar function.
pub fn is_date_function(name: &str) -> bool {
    field(name, 0).is_some()
}

/// Field `name` of the UTC date at `seconds` since the epoch (truncated to
/// whole seconds, as Prometheus does).
pub fn field(name: &str, seconds: i64) -> Option<f64> {
    let days = seconds.div_euclid(86_400);
    let second_of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    Some(match name {
        "minute" => (second_of_day / 60 % 60) as f64,
        "hour" => (second_of_day / 3600) as f64,
        "day_of_month" => day as f64,
        // 1970-01-01 was a Thursday; Sunday is 0.
        "day_of_week" => (days + 4).rem_euclid(7) as f64,
        "day_of_year" => (days - days_from_civil(year, 1, 1) + 1) as f64,
        "days_in_month" => days_in_month(year, month) as f64,
        "month" => month as f64,
        "year" => year as f64,
        _ => return None,
    })
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// (year, month 1–12, day 1–31) of a day count since 1970-01-01, by the
/// proleptic Gregorian calendar (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (year_of_era + era * 400 + i64::from(month <= 2), month, day)
}

/// Inverse of [`civil_from_days`].
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let mp = (month + 9) % 12;
    let day_of_year = (153 * mp + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_of_known_dates() {
        // 2024-02-29T13:45:00Z, a Thursday, day 60 of a leap year.
        let t = 1_709_214_300;
        assert_eq!(field("year", t), Some(2024.0));
        assert_eq!(field("month", t), Some(2.0));
        assert_eq!(field("day_of_month", t), Some(29.0));
        assert_eq!(field("days_in_month", t), Some(29.0));
        assert_eq!(field("day_of_week", t), Some(4.0));
        assert_eq!(field("day_of_year", t), Some(60.0));
        assert_eq!(field("hour", t), Some(13.0));
        assert_eq!(field("minute", t), Some(45.0));
        // Before the epoch: 1969-12-31T23:59:59Z, a Wednesday.
        assert_eq!(field("day_of_week", -1), Some(3.0));
        assert_eq!(field("year", -1), Some(1969.0));
        assert_eq!(field("day_of_year", -1), Some(365.0));
    }
}

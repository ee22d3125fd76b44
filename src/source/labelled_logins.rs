//! The generator kind `labelled_logins`: login events of users with habits, with attacks
//! injected and labelled, to measure how well anomaly detection in SQL finds them.
//!
//! - **Users.** [`USERS`] users in three shifts: a user of shift `s` is active only in the UTC
//!   hours `8s..8s+8`, from one home location and two IPs of its own, with a stable mix of
//!   event types (half LOGIN_SUCCESS, FILE_ACCESS, LOGOUT, 3% LOGIN_FAILED). Event `n` is at
//!   `2026-01-01 + 20 s × n`; its user is one of the shift whose hours those are. Every user
//!   has shown more than 100 events (the learning phase of `anomaly_score`) by event
//!   [`ATTACKS_FROM`], from which on attacks are injected.
//! - **Attacks** (column `label`; every other event is `normal`):
//!   - `takeover` (~1% of events): a successful login to a user of another shift (an odd hour
//!     for the user), from a new IP in a location the user never showed;
//!   - `brute_force`: bursts of 8 consecutive failed logins against one user of another shift,
//!     from one new IP abroad (~0.5% of 8-event blocks);
//!   - `impossible_travel` (~0.4%): a successful login to a user of the current shift, in
//!     its usual hours, from a new IP in another (common) country than its home. Nothing but
//!     the IP and the location is new, which a per-entity baseline alone does not flag.
//!
//! Like every generator kind, event `n` is a pure function of `(seed, n)`.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, StringBuilder, TimestampMillisecondBuilder};
use datafusion::arrow::datatypes::{DataType, Field, TimeUnit};

/// Users, a third in each shift.
pub const USERS: u64 = 300;

/// Milliseconds between events.
const STEP_MS: i64 = 20_000;

/// The first event that may be an attack.
pub const ATTACKS_FROM: u64 = 45_000;

const HOMES: [&str; 8] = ["US", "DE", "GB", "FR", "JP", "BR", "IN", "CA"];
const ABROAD: [&str; 4] = ["KP", "RU", "NG", "IR"];

/// The columns of this kind.
pub fn fields() -> Vec<Field> {
    let ts = DataType::Timestamp(TimeUnit::Millisecond, None);
    vec![
        Field::new("event_id", DataType::Utf8, true),
        Field::new("user_name", DataType::Utf8, true),
        Field::new("ts", ts, true),
        Field::new("type", DataType::Utf8, true),
        Field::new("source_ip", DataType::Utf8, true),
        Field::new("geo", DataType::Utf8, true),
        Field::new("label", DataType::Utf8, true),
    ]
}

/// One generated event.
struct Event {
    user: u64,
    kind: &'static str,
    ip: String,
    geo: &'static str,
    label: &'static str,
}

/// A user of `shift` picked by the random word `r`.
fn user_of(shift: u64, r: u64) -> u64 {
    shift + 3 * (r % (USERS / 3))
}

fn event(rand: impl Fn(u64, u64) -> u64, n: u64, hour: u64) -> Event {
    let shift = hour / 8;
    let other_shift = |r: u64| (shift + 1 + r % 2) % 3;
    let r = rand(n, 1);
    if n >= ATTACKS_FROM {
        let block = n / 8;
        let b = rand(block, 6);
        if b % 1000 < 5 {
            return Event {
                user: user_of(other_shift(b >> 10), b >> 20),
                kind: "LOGIN_FAILED",
                ip: format!("198.51.100.{}", block % 250 + 1),
                geo: ABROAD[(b >> 40) as usize % ABROAD.len()],
                label: "brute_force",
            };
        }
        let a = rand(n, 5) % 1000;
        if a < 10 {
            return Event {
                user: user_of(other_shift(r >> 10), r >> 20),
                kind: "LOGIN_SUCCESS",
                ip: format!("203.0.113.{}", (r >> 30) % 250 + 1),
                geo: ABROAD[(r >> 40) as usize % ABROAD.len()],
                label: "takeover",
            };
        }
        if a < 14 {
            let user = user_of(shift, r >> 20);
            return Event {
                user,
                kind: "LOGIN_SUCCESS",
                ip: format!("192.0.2.{}", (r >> 30) % 250 + 1),
                geo: HOMES[(user as usize + 4) % HOMES.len()],
                label: "impossible_travel",
            };
        }
    }
    let user = user_of(shift, r >> 20);
    let kind = match r % 100 {
        0..=2 => "LOGIN_FAILED",
        3..=52 => "LOGIN_SUCCESS",
        53..=82 => "FILE_ACCESS",
        _ => "LOGOUT",
    };
    Event {
        user,
        kind,
        ip: format!("10.{}.{}.{}", user / 250, user % 250, (r >> 8) % 2 + 1),
        geo: HOMES[user as usize % HOMES.len()],
        label: "normal",
    }
}

/// The columns of events `from..to`; `rand(n, k)` is the generator's `k`-th random word of
/// event `n`, `epoch_ms` the time of event 0 (at 00:00 UTC).
pub fn columns(
    rand: impl Fn(u64, u64) -> u64 + Copy,
    epoch_ms: i64,
    from: u64,
    to: u64,
) -> Vec<ArrayRef> {
    let n_rows = (to - from) as usize;
    let mut id = StringBuilder::with_capacity(n_rows, n_rows * 14);
    let mut user = StringBuilder::with_capacity(n_rows, n_rows * 8);
    let mut ts = TimestampMillisecondBuilder::with_capacity(n_rows);
    let mut kind = StringBuilder::with_capacity(n_rows, n_rows * 12);
    let mut ip = StringBuilder::with_capacity(n_rows, n_rows * 12);
    let mut geo = StringBuilder::with_capacity(n_rows, n_rows * 2);
    let mut label = StringBuilder::with_capacity(n_rows, n_rows * 8);
    for n in from..to {
        let at = epoch_ms + n as i64 * STEP_MS;
        let hour = ((at - epoch_ms) / 3_600_000 % 24) as u64;
        let e = event(rand, n, hour);
        id.append_value(format!("evt-{n:010}"));
        user.append_value(format!("user_{:03}", e.user));
        ts.append_value(at);
        kind.append_value(e.kind);
        ip.append_value(e.ip);
        geo.append_value(e.geo);
        label.append_value(e.label);
    }
    vec![
        Arc::new(id.finish()),
        Arc::new(user.finish()),
        Arc::new(ts.finish()),
        Arc::new(kind.finish()),
        Arc::new(ip.finish()),
        Arc::new(geo.finish()),
        Arc::new(label.finish()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rand(n: u64, k: u64) -> u64 {
        let mut z = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ k.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z ^= z >> 31;
        z.wrapping_mul(0x94D0_49BB_1331_11EB)
    }

    #[test]
    fn users_keep_to_their_shift_until_attacked() {
        for n in 0..ATTACKS_FROM {
            let hour = n * 20 / 3600 % 24;
            let e = event(rand, n, hour);
            assert_eq!(e.label, "normal");
            assert_eq!(e.user % 3, hour / 8, "event {n}");
        }
        let labels: Vec<&str> = (ATTACKS_FROM..ATTACKS_FROM + 20_000)
            .map(|n| event(rand, n, n * 20 / 3600 % 24).label)
            .collect();
        for kind in ["takeover", "brute_force", "impossible_travel"] {
            let count = labels.iter().filter(|l| **l == kind).count();
            assert!((40..=400).contains(&count), "{kind}: {count}");
        }
    }
}

//! The scripts format timestamps themselves (Redis Lua has no date library): check that
//! formatting against the `time` crate over the whole range a reservation can have.

use proptest::prelude::*;
use time::OffsetDateTime;
use time::macros::format_description;

use crate::common::TestRedis;

const PRELUDE: &str = include_str!("../../core/lua/prelude.lua");

fn expected(ms: i64) -> String {
    let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).expect("in range");
    let format = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    at.format(&format).expect("format")
}

#[test]
fn lua_timestamps_match_rfc3339() {
    let redis = TestRedis::start();
    let connection = std::cell::RefCell::new(redis.connection());
    let script = redis::Script::new(&format!("{PRELUDE}\nreturn iso8601(tonumber(ARGV[5]))"));
    let format = |ms: i64| -> String {
        script
            .key("allot:{clock}:events")
            .arg("allot:{clock}:")
            .arg(90)
            .arg(1000)
            .arg(1000)
            .arg(ms)
            .invoke(&mut *connection.borrow_mut())
            .expect("script")
    };
    // Leap days, year ends, century rules.
    for date in [
        "1970-01-01T00:00:00Z",
        "2000-02-29T23:59:59.999Z",
        "2024-02-29T12:00:00Z",
        "2026-12-31T23:59:59.999Z",
        "2100-03-01T00:00:00Z",
    ] {
        let at = OffsetDateTime::parse(date, &time::format_description::well_known::Rfc3339).expect("date");
        let ms = i64::try_from(at.unix_timestamp_nanos() / 1_000_000).expect("ms");
        assert_eq!(format(ms), expected(ms), "{date}");
    }
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(300));
    runner
        .run(&(0i64..4_102_444_800_000), |ms| {
            prop_assert_eq!(format(ms), expected(ms));
            Ok(())
        })
        .expect("Lua and the time crate agree");
}

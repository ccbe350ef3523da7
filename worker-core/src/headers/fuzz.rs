//! Property tests: header and x-death parsing never panic, whatever arrives.

use lapin::types::{
    AMQPValue, ByteArray, DecimalValue, FieldArray, FieldTable, LongString, ShortString,
};
use proptest::prelude::*;

use super::{Attempts, Headers, ATTEMPTS, REDELIVERIES, X_DEATH, X_DELIVERY_COUNT};

fn scalar() -> impl Strategy<Value = AMQPValue> {
    prop_oneof![
        any::<bool>().prop_map(AMQPValue::Boolean),
        any::<i8>().prop_map(AMQPValue::ShortShortInt),
        any::<u8>().prop_map(AMQPValue::ShortShortUInt),
        any::<i16>().prop_map(AMQPValue::ShortInt),
        any::<u16>().prop_map(AMQPValue::ShortUInt),
        any::<i32>().prop_map(AMQPValue::LongInt),
        any::<u32>().prop_map(AMQPValue::LongUInt),
        any::<i64>().prop_map(AMQPValue::LongLongInt),
        any::<f32>().prop_map(AMQPValue::Float),
        any::<f64>().prop_map(AMQPValue::Double),
        (any::<u8>(), any::<u32>())
            .prop_map(|(scale, value)| AMQPValue::DecimalValue(DecimalValue { scale, value })),
        "[a-z.\\-]{0,12}".prop_map(|s| AMQPValue::ShortString(ShortString::from(s))),
        proptest::collection::vec(any::<u8>(), 0..24)
            .prop_map(|b| AMQPValue::LongString(LongString::from(b))),
        any::<u64>().prop_map(AMQPValue::Timestamp),
        proptest::collection::vec(any::<u8>(), 0..8)
            .prop_map(|b| AMQPValue::ByteArray(ByteArray::from(b))),
        Just(AMQPValue::Void),
        // Values that look like what the broker writes.
        prop_oneof![
            Just("queue"),
            Just("reason"),
            Just("rejected"),
            Just("expired"),
            Just("q")
        ]
        .prop_map(|s| AMQPValue::LongString(s.into())),
    ]
}

fn table_of(inner: impl Strategy<Value = AMQPValue>) -> impl Strategy<Value = FieldTable> {
    let key = prop_oneof![
        Just("queue".to_owned()),
        Just("reason".to_owned()),
        Just("count".to_owned()),
        Just("exchange".to_owned()),
        Just("routing-keys".to_owned()),
        Just("time".to_owned()),
        "[a-z\\-]{1,10}",
    ];
    proptest::collection::vec((key, inner), 0..6).prop_map(|entries| {
        let mut t = FieldTable::default();
        for (k, v) in entries {
            t.insert(ShortString::from(k), v);
        }
        t
    })
}

/// Arbitrary values, nested up to a few levels (deeply nested tables included).
fn value() -> impl Strategy<Value = AMQPValue> {
    scalar().prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5)
                .prop_map(|v| AMQPValue::FieldArray(FieldArray::from(v))),
            table_of(inner).prop_map(AMQPValue::FieldTable),
        ]
    })
}

fn headers() -> impl Strategy<Value = Headers> {
    let named = prop_oneof![
        Just(X_DEATH.to_owned()),
        Just(X_DELIVERY_COUNT.to_owned()),
        Just(ATTEMPTS.to_owned()),
        Just(REDELIVERIES.to_owned()),
        "[a-z\\-]{1,12}",
    ];
    proptest::collection::vec((named, value()), 0..6).prop_map(|entries| {
        let mut t = FieldTable::default();
        for (k, v) in entries {
            t.insert(ShortString::from(k), v);
        }
        Headers::from_field_table(t)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 5_000, ..ProptestConfig::default() })]

    #[test]
    fn header_parsing_never_panics(h in headers(), queue in "[a-z]{0,3}") {
        let deaths = h.x_death();
        let attempts = Attempts::read(&h, &queue);
        prop_assert!(attempts.current() >= 1);
        prop_assert!(attempts.current() > attempts.previous() || attempts.current() == u32::MAX);
        let rejected_here = deaths
            .iter()
            .filter(|d| d.queue == queue && d.reason == super::DeathReason::Rejected)
            .fold(0u64, |n, d| n.saturating_add(d.count));
        prop_assert_eq!(attempts.sources.dead_lettered, rejected_here);
        for (_, v) in h.iter() {
            let _ = v.as_u64();
        }
    }

    #[test]
    fn x_death_as_any_value_never_panics(v in value()) {
        let mut t = FieldTable::default();
        t.insert(ShortString::from(X_DEATH), v);
        let h = Headers::from_field_table(t);
        let _ = h.x_death();
        let _ = Attempts::read(&h, "q");
    }
}

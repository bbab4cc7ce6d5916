//! Nice levels, load weights and the virtual-runtime arithmetic.
//!
//! The table is Linux's `prio_to_weight`: nice 0 is 1024 and every nice
//! step changes the weight by about 1.25, so one nice level is worth about
//! 10% of CPU time between two competing tasks.

/// The load weight of a nice-0 task; virtual time runs at wall-clock speed
/// for an entity of this weight.
pub const NICE_0_LOAD: u64 = 1024;

/// The lowest (most favoured) nice value.
pub const MIN_NICE: i8 = -20;

/// The highest (least favoured) nice value.
pub const MAX_NICE: i8 = 19;

/// Linux's nice-to-weight table, indexed by `nice + 20`.
pub const PRIO_TO_WEIGHT: [u64; 40] = [
    /* -20 */ 88761, 71755, 56483, 46273, 36291, //
    /* -15 */ 29154, 23254, 18705, 14949, 11916, //
    /* -10 */ 9548, 7620, 6100, 4904, 3906, //
    /*  -5 */ 3121, 2501, 1991, 1586, 1277, //
    /*   0 */ 1024, 820, 655, 526, 423, //
    /*   5 */ 335, 272, 215, 172, 137, //
    /*  10 */ 110, 87, 70, 56, 45, //
    /*  15 */ 36, 29, 23, 18, 15, //
];

/// Whether `nice` lies in `MIN_NICE..=MAX_NICE`.
pub fn valid_nice(nice: i8) -> bool {
    (MIN_NICE..=MAX_NICE).contains(&nice)
}

/// The load weight of a nice value; values outside -20..=19 are clamped.
pub fn nice_to_weight(nice: i8) -> u64 {
    let idx = i16::from(nice.clamp(MIN_NICE, MAX_NICE)) - i16::from(MIN_NICE);
    // idx is in 0..40 after the clamp.
    PRIO_TO_WEIGHT[usize::try_from(idx).unwrap_or(0)]
}

/// Converts `delta_ns` of real execution time of an entity with load weight
/// `weight` into virtual time: `delta * NICE_0_LOAD / weight`.
///
/// A nice-0 entity's virtual time advances 1:1 with its runtime; a lighter
/// entity's advances faster. A zero weight is treated as 1.
pub fn calc_delta_fair(delta_ns: u64, weight: u64) -> u64 {
    if weight == NICE_0_LOAD {
        return delta_ns;
    }
    let v = u128::from(delta_ns) * u128::from(NICE_0_LOAD) / u128::from(weight.max(1));
    u64::try_from(v).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_endpoints_and_nice0() {
        assert_eq!(nice_to_weight(-20), 88761);
        assert_eq!(nice_to_weight(0), NICE_0_LOAD);
        assert_eq!(nice_to_weight(5), 335);
        assert_eq!(nice_to_weight(19), 15);
        // Clamped outside the range.
        assert_eq!(nice_to_weight(-128), 88761);
        assert_eq!(nice_to_weight(127), 15);
        assert!(valid_nice(-20) && valid_nice(19));
        assert!(!valid_nice(-21) && !valid_nice(20));
    }

    #[test]
    fn table_is_decreasing_by_about_1_25() {
        for w in PRIO_TO_WEIGHT.windows(2) {
            let ratio = w[0] as f64 / w[1] as f64;
            assert!((1.15..1.35).contains(&ratio), "ratio {ratio}");
        }
    }

    #[test]
    fn delta_fair_scaling() {
        assert_eq!(calc_delta_fair(1_000_000, 1024), 1_000_000);
        assert_eq!(calc_delta_fair(335, 335), 1024);
        assert_eq!(calc_delta_fair(1_000_000, 2048), 500_000);
        assert_eq!(calc_delta_fair(10, 0), 10240);
        assert_eq!(calc_delta_fair(u64::MAX, 15), u64::MAX);
    }
}

//! `ewma_zscore(entity, value [, alpha])`: how unusual a value is for its entity, against the
//! entity's exponentially weighted mean and variance of the values before it.

/// Values an entity must have shown before it is scored.
pub const WARM_UP: u64 = 10;

/// The smoothing factor when the call names none: about the last 20 values weigh most.
pub const DEFAULT_ALPHA: f64 = 0.1;

/// One entity's exponentially weighted moments.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Ewma {
    pub count: u64,
    pub mean: f64,
    pub variance: f64,
}

impl Ewma {
    /// Scores `value` against the values seen so far, then learns it. NULL (None) during the
    /// warm-up; ±infinity for a new value after a run of identical ones.
    pub fn score_then_learn(&mut self, value: f64, alpha: f64) -> Option<f64> {
        if !value.is_finite() {
            return None;
        }
        let alpha = if alpha > 0.0 && alpha <= 1.0 {
            alpha
        } else {
            DEFAULT_ALPHA
        };
        let score = (self.count >= WARM_UP).then(|| {
            let deviation = value - self.mean;
            let spread = self.variance.sqrt();
            if spread > 0.0 {
                deviation / spread
            } else if deviation == 0.0 {
                0.0
            } else {
                deviation.signum() * f64::INFINITY
            }
        });
        if self.count == 0 {
            self.mean = value;
            self.variance = 0.0;
        } else {
            let deviation = value - self.mean;
            let step = alpha * deviation;
            self.mean += step;
            self.variance = (1.0 - alpha) * (self.variance + deviation * step);
        }
        self.count += 1;
        score
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.count.to_le_bytes());
        out.extend_from_slice(&self.mean.to_le_bytes());
        out.extend_from_slice(&self.variance.to_le_bytes());
    }

    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let word = |i: usize| bytes.get(i * 8..i * 8 + 8)?.try_into().ok();
        Some(Self {
            count: u64::from_le_bytes(word(0)?),
            mean: f64::from_le_bytes(word(1)?),
            variance: f64::from_le_bytes(word(2)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_while_warming_up_then_scores_against_the_past() {
        let mut e = Ewma::default();
        for i in 0..WARM_UP {
            let v = if i % 2 == 0 { 10.0 } else { 12.0 };
            assert_eq!(e.score_then_learn(v, 0.1), None);
        }
        let mut probe = e;
        let typical = probe.score_then_learn(11.0, 0.1).unwrap();
        let outlier = e.score_then_learn(40.0, 0.1).unwrap();
        assert!(typical.abs() < 1.0, "{typical}");
        assert!(outlier > 10.0, "{outlier}");
    }

    #[test]
    fn constant_values_score_zero_and_a_change_is_infinite() {
        let mut e = Ewma::default();
        for _ in 0..WARM_UP {
            e.score_then_learn(5.0, 0.5);
        }
        let mut probe = e;
        assert_eq!(probe.score_then_learn(5.0, 0.5), Some(0.0));
        assert_eq!(e.score_then_learn(4.0, 0.5), Some(f64::NEG_INFINITY));
    }

    #[test]
    fn round_trips_through_bytes() {
        let mut e = Ewma::default();
        for v in [1.0, 2.0, 4.0] {
            e.score_then_learn(v, 0.3);
        }
        let mut bytes = Vec::new();
        e.encode(&mut bytes);
        assert_eq!(Ewma::decode(&bytes), Some(e));
        assert_eq!(Ewma::decode(&bytes[..10]), None);
    }
}

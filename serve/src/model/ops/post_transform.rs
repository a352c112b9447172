//! The `post_transform` attribute shared by the ai.onnx.ml classifiers and
//! regressors, computed as onnxruntime does (its formulas, in f32), and the
//! MLAS approximations (logistic, tanh) onnxruntime computes some of them
//! with, reproduced rounding for rounding.

use super::attributes::Attributes;
use tract_onnx::tract_hir::internal::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostTransform {
    None,
    Softmax,
    Logistic,
    /// Softmax over the non-zero scores; zeros stay (nearly) zero.
    SoftmaxZero,
    Probit,
}

impl PostTransform {
    pub fn parse(attributes: &Attributes) -> TractResult<PostTransform> {
        attributes.choice(
            "post_transform",
            &[
                ("NONE", PostTransform::None),
                ("SOFTMAX", PostTransform::Softmax),
                ("LOGISTIC", PostTransform::Logistic),
                ("SOFTMAX_ZERO", PostTransform::SoftmaxZero),
                ("PROBIT", PostTransform::Probit),
            ],
        )
    }

    /// Applies the transform to one row of scores, in place.
    pub fn apply(self, scores: &mut [f32]) {
        match self {
            PostTransform::None => {}
            PostTransform::Softmax => softmax(scores),
            PostTransform::Logistic => scores.iter_mut().for_each(|s| *s = logistic(*s)),
            PostTransform::SoftmaxZero => softmax_zero(scores),
            PostTransform::Probit => scores.iter_mut().for_each(|s| *s = probit(*s)),
        }
    }

    /// Applies the transform to one row of scores as onnxruntime's linear and
    /// SVM kernels do (`batched_update_scores_inplace`): LOGISTIC with MLAS's
    /// approximation, and to a row of one score only if PROBIT.
    pub fn apply_batched(self, scores: &mut [f32]) {
        self.apply_batched_rows(scores, scores.len());
    }

    /// [`Self::apply_batched`] on each row of `columns` scores in `scores`.
    /// The transform is chosen once per batch, not per row: per row, the
    /// dispatch cost more than softmax over a few classes itself.
    pub fn apply_batched_rows(self, scores: &mut [f32], columns: usize) {
        let rows = scores.chunks_exact_mut(columns.max(1));
        match self {
            PostTransform::Logistic if columns > 1 => {
                rows.flatten().for_each(|s| *s = mlas_logistic(*s))
            }
            PostTransform::Softmax if columns > 1 => rows.for_each(softmax),
            PostTransform::SoftmaxZero if columns > 1 => rows.for_each(softmax_zero),
            PostTransform::Probit => rows.flatten().for_each(|s| *s = probit(*s)),
            _ => {}
        }
    }
}

/// 1 / (1 + e^-x), computed on |x| for stability.
pub fn logistic(x: f32) -> f32 {
    let v = 1.0 / (1.0 + (-x.abs()).exp());
    if x < 0.0 {
        1.0 - v
    } else {
        v
    }
}

/// The logistic function as MLAS computes it on score rows (Eigen's rational
/// approximation on [-18, 18], clamped to [0, 1]).
pub fn mlas_logistic(x: f32) -> f32 {
    const NUMERATOR: [f32; 5] = [
        4.370_31e-11,
        1.156_273_2e-7,
        6.085_749e-5,
        8.513_771e-3,
        2.482_879_5e-1,
    ];
    const DENOMINATOR: [f32; 6] = [
        6.102_473_7e-13,
        5.761_021_4e-9,
        6.291_068e-6,
        1.701_988_2e-3,
        1.168_176_5e-1,
        9.931_519e-1,
    ];
    // `clamp` keeps NaN.
    (odd_rational(x.clamp(-18.0, 18.0), &NUMERATOR, &DENOMINATOR) + 0.5).clamp(0.0, 1.0)
}

/// tanh as MLAS computes it (the rational approximation Eigen uses, on
/// [-9, 9]).
pub fn mlas_tanh(x: f32) -> f32 {
    const NUMERATOR: [f32; 7] = [
        -2.760_768_4e-16,
        2.000_188e-13,
        -8.604_672e-11,
        5.122_297_3e-8,
        1.485_722_35e-5,
        6.372_619_5e-4,
        4.893_524_6e-3,
    ];
    const DENOMINATOR: [f32; 4] = [1.198_258_4e-6, 1.185_347_1e-4, 2.268_434_7e-3, 4.893_525e-3];
    // `clamp` keeps NaN.
    odd_rational(x.clamp(-9.0, 9.0), &NUMERATOR, &DENOMINATOR)
}

/// `x · p(x²) / q(x²)` as MLAS evaluates its rational approximations: each
/// polynomial (coefficients from the highest degree down) in Horner form
/// with fused multiply-adds.
fn odd_rational(x: f32, numerator: &[f32], denominator: &[f32]) -> f32 {
    let x2 = x * x;
    let horner = |c: &[f32]| c[1..].iter().fold(c[0], |acc, &k| acc.mul_add(x2, k));
    horner(numerator) * x / horner(denominator)
}

/// √2 · erfinv(2p − 1), with the approximation of erfinv onnxruntime uses.
pub fn probit(p: f32) -> f32 {
    std::f32::consts::SQRT_2 * erf_inv(2.0 * p - 1.0)
}

fn erf_inv(x: f32) -> f32 {
    let sign = if x < 0.0 { -1.0 } else { 1.0 };
    let x = (1.0 - x) * (1.0 + x);
    let log = x.ln();
    let v = 2.0 / (std::f32::consts::PI * 0.147) + 0.5 * log;
    let v2 = 1.0 / 0.147 * log;
    let v3 = -v + (v * v - v2).sqrt();
    sign * v3.sqrt()
}

#[inline]
pub fn softmax(scores: &mut [f32]) {
    let max = scores.iter().copied().fold(f32::MIN, f32::max);
    let mut sum = 0.0;
    for s in scores.iter_mut() {
        *s = (*s - max).exp();
        sum += *s;
    }
    scores.iter_mut().for_each(|s| *s /= sum);
}

#[inline]
fn softmax_zero(scores: &mut [f32]) {
    let max = scores.iter().copied().fold(f32::MIN, f32::max);
    let exp_neg_max = (-max).exp();
    let mut sum = 0.0;
    for s in scores.iter_mut() {
        if s.abs() > 1e-7 {
            *s = (*s - max).exp();
            sum += *s;
        } else {
            *s *= exp_neg_max;
        }
    }
    scores.iter_mut().for_each(|s| *s /= sum);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logistic_and_probit_are_inverse_shaped() {
        assert!((logistic(0.0) - 0.5).abs() < 1e-7);
        assert!((logistic(2.0) + logistic(-2.0) - 1.0).abs() < 1e-6);
        assert!(probit(0.5).abs() < 1e-6);
        assert!((probit(0.975) - 1.95996).abs() < 5e-3);
    }

    #[test]
    fn mlas_logistic_matches_onnxruntime() {
        // Values onnxruntime 1.31 gave on LinearClassifier/LinearRegressor
        // score rows with LOGISTIC.
        assert_eq!(mlas_logistic(0.3125), 0.577_495_34);
        assert_eq!(mlas_logistic(0.1), 0.524_979_2);
        assert_eq!(mlas_logistic(-0.8), 0.310_025_54);
        assert_eq!(mlas_logistic(0.0), 0.5);
        assert_eq!(mlas_logistic(20.0), 1.0);
        assert_eq!(mlas_logistic(-20.0), 0.0);
        assert!(mlas_logistic(f32::NAN).is_nan());
    }

    #[test]
    fn softmax_sums_to_one_and_softmax_zero_keeps_zeros() {
        let mut s = [1.0, 2.0, 3.0];
        softmax(&mut s);
        assert!((s.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(s[2] > s[1] && s[1] > s[0]);
        let mut z = [0.0, 1.0, 1.0];
        softmax_zero(&mut z);
        assert_eq!(z[0], 0.0);
        assert!((z[1] - 0.5).abs() < 1e-6);
    }
}

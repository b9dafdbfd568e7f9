//! Latency histograms: log2 buckets for display, log-linear sub-buckets for percentiles.
//!
//! Values are in ns. Each power-of-two range `[2^k, 2^(k+1))` is split into 16 linear
//! sub-buckets, so p50/p99 are exact to within 1/16 of their power of two (about 6 %); min,
//! max and the average are exact. The displayed buckets are the log2 ones, like bpftrace's
//! `hist()` and the BPF book's `kvmexits`.

use serde::Serialize;

const SUB: usize = 16;
const SUB_BITS: u32 = 4;

/// A histogram of ns values (accumulator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hist {
    /// `[2^k, 2^(k+1))` × 16 linear sub-buckets; index 0..16 holds the values 0..16 directly.
    counts: Vec<u64>,
    count: u64,
    sum: u128,
    min: u64,
    max: u64,
}

impl Default for Hist {
    fn default() -> Self {
        Hist {
            counts: vec![0; 65 * SUB],
            count: 0,
            sum: 0,
            min: u64::MAX,
            max: 0,
        }
    }
}

fn index_of(v: u64) -> usize {
    if v < SUB as u64 {
        return v as usize;
    }
    let k = 63 - v.leading_zeros(); // 2^k <= v, k >= 4
    let sub = ((v >> (k - SUB_BITS)) as usize) & (SUB - 1);
    (k as usize - SUB_BITS as usize + 1) * SUB + sub
}

/// Lower bound and width of sub-bucket `i`.
fn bounds_of(i: usize) -> (u64, u64) {
    if i < SUB {
        return (i as u64, 1);
    }
    let k = (i / SUB) as u32 + SUB_BITS - 1;
    let sub = (i % SUB) as u64;
    let width = 1u64 << (k - SUB_BITS);
    ((1u64 << k) + sub * width, width)
}

impl Hist {
    /// Adds one value in ns.
    pub fn add(&mut self, v: u64) {
        self.counts[index_of(v)] += 1;
        self.count += 1;
        self.sum += u128::from(v);
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &Hist) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// Number of values.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The `q`-quantile (0..=1) in ns: the midpoint of the sub-bucket holding it, clamped to
    /// `[min, max]`. `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (lo, w) = bounds_of(i);
                return Some((lo + w / 2).clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }

    /// The summary for reports. `None` when empty.
    pub fn summary(&self) -> Option<LatencySummary> {
        if self.count == 0 {
            return None;
        }
        let mut log2: Vec<Log2Bucket> = Vec::new();
        for (i, &c) in self.counts.iter().enumerate().filter(|(_, c)| **c > 0) {
            let (lo, _) = bounds_of(i);
            let (lo2, hi2) = if lo == 0 {
                (0, 1)
            } else {
                let k = 63 - lo.leading_zeros();
                (1u64 << k, 1u64.checked_shl(k + 1).unwrap_or(u64::MAX))
            };
            match log2.last_mut() {
                Some(b) if b.lo_ns == lo2 => b.count += c,
                _ => log2.push(Log2Bucket {
                    lo_ns: lo2,
                    hi_ns: hi2,
                    count: c,
                }),
            }
        }
        Some(LatencySummary {
            count: self.count,
            min_ns: self.min,
            avg_ns: (self.sum / u128::from(self.count)) as u64,
            p50_ns: self.quantile(0.50).unwrap_or(0),
            p99_ns: self.quantile(0.99).unwrap_or(0),
            max_ns: self.max,
            total_ns: u64::try_from(self.sum).unwrap_or(u64::MAX),
            buckets: log2,
        })
    }
}

/// One log2 bucket: values in `[lo_ns, hi_ns)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Log2Bucket {
    /// Inclusive lower bound, ns (0 or a power of two).
    pub lo_ns: u64,
    /// Exclusive upper bound, ns.
    pub hi_ns: u64,
    /// Values in the bucket.
    pub count: u64,
}

/// A latency distribution as reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LatencySummary {
    /// Number of values.
    pub count: u64,
    /// Smallest value, ns (exact).
    pub min_ns: u64,
    /// Mean, ns (exact, truncated).
    pub avg_ns: u64,
    /// Median, ns (within 1/16 of its power of two).
    pub p50_ns: u64,
    /// 99th percentile, ns (within 1/16 of its power of two).
    pub p99_ns: u64,
    /// Largest value, ns (exact).
    pub max_ns: u64,
    /// Sum of all values, ns.
    pub total_ns: u64,
    /// Non-empty log2 buckets, ascending.
    pub buckets: Vec<Log2Bucket>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_roundtrip() {
        for v in [0u64, 1, 15, 16, 17, 31, 32, 1000, 65_535, 1 << 40, u64::MAX] {
            let i = index_of(v);
            let (lo, w) = bounds_of(i);
            assert!(lo <= v && v - lo < w, "v={v} i={i} lo={lo} w={w}");
        }
    }

    #[test]
    fn summary() {
        let mut h = Hist::default();
        for v in 1..=1000u64 {
            h.add(v * 1000);
        }
        let s = h.summary().unwrap();
        assert_eq!(s.count, 1000);
        assert_eq!(s.min_ns, 1000);
        assert_eq!(s.max_ns, 1_000_000);
        assert_eq!(s.avg_ns, 500_500);
        let p50 = s.p50_ns as f64;
        assert!((p50 - 500_000.0).abs() / 500_000.0 < 0.07, "{p50}");
        let p99 = s.p99_ns as f64;
        assert!((p99 - 990_000.0).abs() / 990_000.0 < 0.07, "{p99}");
        assert_eq!(s.buckets.iter().map(|b| b.count).sum::<u64>(), 1000);
        assert!(s.buckets.iter().all(|b| b.hi_ns == 2 * b.lo_ns));
        let mut h2 = Hist::default();
        h2.add(7);
        h2.merge(&h);
        assert_eq!(h2.summary().unwrap().min_ns, 7);
        assert!(Hist::default().summary().is_none());
    }
}

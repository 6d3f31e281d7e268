//! Link latency models: how long a message takes from one simulated node to another.
//!
//! - [`LatencyModel::Internet`] (the default): every node sits at a point of a plane
//!   100 ms across and has an access delay from a heavy-tailed (Pareto) distribution;
//!   a link costs both access delays plus the distance between the points, stretched by
//!   a per-pair route inflation (policy routing, detours). Because the inflation belongs
//!   to the pair, the triangle inequality often fails: going through a third node can be
//!   quicker than the direct link, which is what RON exploits (docs/routing.md gives
//!   the model's figures).
//! - [`LatencyModel::Uniform`]: every link a fixed draw in [10, 100) ms (the model of
//!   the routing tables measured before the Internet model existed).
//! - [`LatencyModel::Constant`]: every link the same.
//! - [`LatencyModel::Matrix`]: a square matrix of one-way milliseconds a user supplies
//!   (a measured data set); node `i` sits at host `i mod size`.
//!
//! Every figure is a pure function of the seed and the two ends, so no per-link state
//! is kept and a million nodes cost nothing here.

use crate::event::Nanos;
use crate::mix::splitmix;
use std::fmt;
use std::sync::Arc;

/// Width of the Internet model's plane, one-way ms.
pub const PLANE_MS: f64 = 100.0;
/// The Internet model's least access delay, ms (the Pareto scale).
pub const ACCESS_MIN_MS: f64 = 2.0;
/// The access delays' Pareto shape: heavy-tailed (infinite variance), median 3.2 ms,
/// mean 6 ms, 1% above 43 ms.
pub const ACCESS_SHAPE: f64 = 1.5;
/// The largest access delay drawn, ms.
pub const ACCESS_MAX_MS: f64 = 500.0;
/// Mean of the exponential route inflation added to 1 (so the mean stretch is 1.4;
/// one pair in ten above 1.92).
pub const INFLATION_MEAN: f64 = 0.4;
/// A constant model's default link latency, ms.
pub const DEFAULT_CONSTANT_MS: f64 = 50.0;
/// The largest matrix read (hosts per side).
pub const MAX_MATRIX: usize = 4096;

/// A latency model (`--latency-model`).
#[derive(Clone, Debug, PartialEq)]
pub enum LatencyModel {
    /// Synthetic coordinates, heavy-tailed access delays, per-pair inflation.
    Internet,
    /// A fixed draw in [10, 100) ms per link.
    Uniform,
    /// Every link this many ms.
    Constant(f64),
    /// A supplied matrix.
    Matrix(Arc<LatencyMatrix>),
}

/// A square matrix of one-way latencies in ms, read from a file.
#[derive(Debug, PartialEq)]
pub struct LatencyMatrix {
    /// Where it came from (for the summary).
    pub path: String,
    /// Hosts per side.
    pub size: usize,
    /// Row-major one-way latencies, ns.
    cells: Vec<Nanos>,
}

impl LatencyMatrix {
    /// Parses `text`: one row a line, `size` numbers each (ms, separated by spaces, tabs
    /// or commas), `size` rows; blank lines and lines starting with `#` are skipped.
    pub fn parse(path: &str, text: &str) -> Result<LatencyMatrix, String> {
        let mut rows: Vec<Vec<Nanos>> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let row = line
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|f| !f.is_empty())
                .map(|f| match f.parse::<f64>() {
                    Ok(ms) if ms.is_finite() && (0.0..=60_000.0).contains(&ms) => {
                        Ok((ms * 1e6) as Nanos)
                    }
                    _ => Err(format!(
                        "line {}: {f:?} is not a latency in ms (0 to 60,000)",
                        n + 1
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?;
            rows.push(row);
            if rows.len() > MAX_MATRIX {
                return Err(format!("more than {MAX_MATRIX} rows"));
            }
        }
        let size = rows.len();
        if size < 2 {
            return Err("a matrix needs at least 2 rows".into());
        }
        if let Some((i, r)) = rows.iter().enumerate().find(|(_, r)| r.len() != size) {
            return Err(format!(
                "row {} has {} entries; a {size}-row matrix needs {size} in each",
                i + 1,
                r.len()
            ));
        }
        Ok(LatencyMatrix {
            path: path.to_string(),
            size,
            cells: rows.into_iter().flatten().collect(),
        })
    }

    fn get(&self, a: u32, b: u32) -> Nanos {
        let (x, y) = (a as usize % self.size, b as usize % self.size);
        // Two nodes on one host, or a zero entry, still take a tenth of a millisecond.
        self.cells[x * self.size + y].max(100_000)
    }
}

impl std::str::FromStr for LatencyModel {
    type Err = String;

    /// `internet`, `uniform`, `constant` or `constant:MS`, `matrix:FILE` (read now).
    fn from_str(s: &str) -> Result<LatencyModel, String> {
        match s.split_once(':') {
            None if s == "internet" => Ok(LatencyModel::Internet),
            None if s == "uniform" => Ok(LatencyModel::Uniform),
            None if s == "constant" => Ok(LatencyModel::Constant(DEFAULT_CONSTANT_MS)),
            Some(("constant", ms)) => match ms.parse::<f64>() {
                Ok(v) if v.is_finite() && v > 0.0 && v <= 60_000.0 => Ok(LatencyModel::Constant(v)),
                _ => Err(format!(
                    "constant:{ms}: give a latency in ms above 0, e.g. constant:50"
                )),
            },
            Some(("matrix", path)) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read the latency matrix {path}: {e}"))?;
                LatencyMatrix::parse(path, &text)
                    .map(|m| LatencyModel::Matrix(Arc::new(m)))
                    .map_err(|e| format!("latency matrix {path}: {e}"))
            }
            _ => Err(format!(
                "unknown latency model {s:?}: internet, uniform, constant[:MS] or matrix:FILE"
            )),
        }
    }
}

impl fmt::Display for LatencyModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LatencyModel::Internet => f.write_str("internet"),
            LatencyModel::Uniform => f.write_str("uniform"),
            LatencyModel::Constant(ms) => write!(f, "constant:{ms}"),
            LatencyModel::Matrix(m) => write!(f, "matrix:{}", m.path),
        }
    }
}

impl serde::Serialize for LatencyModel {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A model bound to a run's seed.
#[derive(Clone, Debug)]
pub struct Latency {
    model: LatencyModel,
    seed: u64,
}

/// A uniform draw in (0, 1] from a hash.
fn unit(h: u64) -> f64 {
    ((h >> 11) as f64 + 1.0) / (1u64 << 53) as f64
}

impl Latency {
    /// `model` with `seed`.
    pub fn new(model: LatencyModel, seed: u64) -> Latency {
        Latency { model, seed }
    }

    /// One-way latency between nodes `a` and `b` (the same both ways).
    pub fn between(&self, a: u32, b: u32) -> Nanos {
        let (x, y) = if a < b { (a, b) } else { (b, a) };
        match &self.model {
            LatencyModel::Uniform => {
                let h = splitmix(self.seed ^ (u64::from(x) << 32 | u64::from(y)));
                10_000_000 + h % 90_000_000
            }
            LatencyModel::Constant(ms) => (ms * 1e6) as Nanos,
            LatencyModel::Matrix(m) => m.get(x, y),
            LatencyModel::Internet => {
                let (px, py) = self.point(x);
                let (qx, qy) = self.point(y);
                let geo = ((px - qx).powi(2) + (py - qy).powi(2)).sqrt() * PLANE_MS;
                let pair = splitmix(self.seed ^ 0x1A7E ^ (u64::from(x) << 32 | u64::from(y)));
                let inflation = 1.0 - INFLATION_MEAN * unit(pair).ln();
                let ms = self.access(x) + self.access(y) + geo * inflation;
                (ms * 1e6) as Nanos
            }
        }
    }

    /// The Internet model's point of node `n` in the unit square.
    fn point(&self, n: u32) -> (f64, f64) {
        let h = splitmix(self.seed ^ 0xC0_0D ^ (u64::from(n) << 1));
        let g = splitmix(h);
        (unit(h), unit(g))
    }

    /// The Internet model's access delay of node `n`, ms.
    fn access(&self, n: u32) -> f64 {
        let u = unit(splitmix(self.seed ^ 0xACCE55 ^ (u64::from(n) << 20)));
        (ACCESS_MIN_MS / u.powf(1.0 / ACCESS_SHAPE)).min(ACCESS_MAX_MS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: Nanos) -> f64 {
        n as f64 / 1e6
    }

    #[test]
    fn models_parse_and_print_back() {
        for s in ["internet", "uniform", "constant:20"] {
            let m: LatencyModel = s.parse().unwrap();
            assert_eq!(m.to_string(), s);
        }
        assert_eq!(
            "constant".parse::<LatencyModel>().unwrap(),
            LatencyModel::Constant(DEFAULT_CONSTANT_MS)
        );
        for bad in [
            "",
            "fast",
            "constant:0",
            "constant:x",
            "matrix:/nonexistent/m.txt",
        ] {
            assert!(bad.parse::<LatencyModel>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_matrix_is_read_and_checked() {
        let m = LatencyMatrix::parse("m", "# hosts\n0 10 20\n10, 0, 5\n\n20 5 0\n").unwrap();
        assert_eq!(m.size, 3);
        let l = Latency::new(LatencyModel::Matrix(Arc::new(m)), 1);
        assert_eq!(ms(l.between(0, 2)), 20.0);
        assert_eq!(ms(l.between(2, 1)), 5.0);
        // Node 4 sits on host 1; node 3 on host 0; nodes 0 and 3 share a host.
        assert_eq!(ms(l.between(4, 2)), 5.0);
        assert_eq!(ms(l.between(0, 3)), 0.1);
        assert!(LatencyMatrix::parse("m", "0 1\n1\n")
            .unwrap_err()
            .contains("row 2"));
        assert!(LatencyMatrix::parse("m", "0 -1\n1 0\n").is_err());
        assert!(LatencyMatrix::parse("m", "0\n").is_err());
        assert!(LatencyMatrix::parse("m", "0 1\n1 NaN\n").is_err());
    }

    #[test]
    fn internet_latency_is_symmetric_heavy_tailed_and_breaks_the_triangle() {
        let l = Latency::new(LatencyModel::Internet, 7);
        let n = 300u32;
        let mut all = Vec::new();
        for a in 0..n {
            for b in a + 1..n {
                assert_eq!(l.between(a, b), l.between(b, a));
                all.push(ms(l.between(a, b)));
            }
        }
        all.sort_by(f64::total_cmp);
        let median = all[all.len() / 2];
        let p99 = all[all.len() * 99 / 100];
        assert!((40.0..120.0).contains(&median), "median {median}");
        assert!(p99 > 2.0 * median, "p99 {p99} against median {median}");
        assert!(all[0] >= 2.0 * ACCESS_MIN_MS);
        // Some direct links are slower than a detour through a third node.
        let mut violated = 0;
        let mut checked = 0;
        for a in 0..40u32 {
            for b in 40..80u32 {
                let direct = l.between(a, b);
                checked += 1;
                if (80..120u32).any(|c| l.between(a, c) + l.between(c, b) < direct) {
                    violated += 1;
                }
            }
        }
        assert!(violated * 10 > checked, "{violated} of {checked}");
    }

    #[test]
    fn uniform_and_constant_stay_in_range() {
        let u = Latency::new(LatencyModel::Uniform, 3);
        let c = Latency::new(LatencyModel::Constant(20.0), 3);
        for a in 0..50 {
            for b in 0..50 {
                assert!((10.0..100.0).contains(&ms(u.between(a, b))));
                assert_eq!(ms(c.between(a, b)), 20.0);
            }
        }
    }
}

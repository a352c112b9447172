//! Held-back test sets: `test.csv` with feature columns and a final `label`
//! column, as `models/train` writes them. The acceptance gate, the benchmarks
//! and the tests read them the same way.

use std::path::Path;

use super::LoadError;

/// Rows of features and their true labels.
#[derive(Debug, Clone)]
pub struct TestSet {
    pub feature_names: Vec<String>,
    pub rows: Vec<Vec<f64>>,
    /// The `label` column as written (a class label, string or integer).
    pub labels: Vec<String>,
}

impl TestSet {
    pub fn read(path: &Path) -> Result<TestSet, LoadError> {
        let shown = path.display().to_string();
        let bad = |reason: String| LoadError::Io {
            path: shown.clone(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let header: Vec<String> = lines
            .next()
            .ok_or_else(|| bad("empty file".into()))?
            .split(',')
            .map(|h| h.trim().to_string())
            .collect();
        if header.last().map(String::as_str) != Some("label") || header.len() < 2 {
            return Err(bad(
                "the last column must be `label`, after at least one feature".into(),
            ));
        }
        let width = header.len() - 1;
        let mut rows = Vec::new();
        let mut labels = Vec::new();
        for (ix, line) in lines.enumerate() {
            let cells: Vec<&str> = line.split(',').map(str::trim).collect();
            if cells.len() != header.len() {
                return Err(bad(format!(
                    "row {} has {} cells, the header {}",
                    ix + 1,
                    cells.len(),
                    header.len()
                )));
            }
            let row = cells[..width]
                .iter()
                .map(|c| {
                    c.parse::<f64>()
                        .map_err(|_| bad(format!("row {}: `{c}` is not a number", ix + 1)))
                })
                .collect::<Result<Vec<f64>, _>>()?;
            rows.push(row);
            labels.push(cells[width].to_string());
        }
        if rows.is_empty() {
            return Err(bad("no rows".into()));
        }
        Ok(TestSet {
            feature_names: header[..width].to_vec(),
            rows,
            labels,
        })
    }

    pub fn features(&self) -> usize {
        self.feature_names.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_bundled_iris_test_set() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/iris/test.csv");
        let set = TestSet::read(&path).unwrap();
        assert_eq!(set.features(), 4);
        assert_eq!(set.rows.len(), set.labels.len());
        assert!(set
            .labels
            .iter()
            .all(|l| ["setosa", "versicolor", "virginica"].contains(&l.as_str())));
    }

    #[test]
    fn malformed_files_are_errors() {
        let dir = std::env::temp_dir().join(format!("modelops-testset-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in [
            ("nolabel.csv", "a,b\n1,2\n"),
            ("short.csv", "a,label\n1\n"),
            ("nan.csv", "a,label\nx,1\n"),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            assert!(TestSet::read(&path).is_err(), "{name}");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}

//! The template values of a release: computed from the flags and the
//! model's lineage (plus `--set`).

use crate::template::{self, Values};

use super::{Args, Error, Lineage};

pub fn release_values(args: &Args, lineage: &Lineage) -> Result<Values, Error> {
    if !is_pinned(&args.image) {
        return Err(template::bad(
            "--image",
            format!("`{}` is not REPO@sha256:<64 hex digits>", args.image),
        )
        .into());
    }
    let digest = args
        .image
        .rsplit_once('@')
        .map(|(_, d)| d)
        .unwrap_or_default();
    if !(7..=40).contains(&args.git_commit.len()) || !is_hex(&args.git_commit) {
        return Err(template::bad(
            "--git-commit",
            format!("`{}` is not a commit hash", args.git_commit),
        )
        .into());
    }
    // preStop sleep + serve's drain + in-flight requests + slack for the
    // process to exit.
    let grace = 2 * args.drain_seconds + args.shutdown_timeout_seconds + 5;
    let computed = [
        ("MODEL_NAME", lineage.name.clone()),
        ("MODEL_VERSION", lineage.version.to_string()),
        ("MODEL_SHA256", lineage.model_sha256.clone()),
        ("TRAINING_DATA_SHA256", lineage.training_data_sha256.clone()),
        ("GIT_COMMIT", args.git_commit.clone()),
        ("IMAGE", args.image.clone()),
        ("IMAGE_DIGEST", digest.to_owned()),
        ("MODEL_ROOT", args.model_root.clone()),
        ("DRAIN_SECONDS", args.drain_seconds.to_string()),
        (
            "SHUTDOWN_TIMEOUT_SECONDS",
            args.shutdown_timeout_seconds.to_string(),
        ),
        ("TERMINATION_GRACE_SECONDS", grace.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    Ok(Values::new(computed, &args.values.set)?)
}

/// `REPO@sha256:<64 lowercase hex>`.
pub fn is_pinned(image: &str) -> bool {
    match image.rsplit_once("@sha256:") {
        Some((repo, hex)) => !repo.is_empty() && hex.len() == 64 && is_hex(hex),
        None => false,
    }
}

fn is_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_digests_are_pinned() {
        let hex = "a".repeat(64);
        assert!(is_pinned(&format!("acr.io/serve@sha256:{hex}")));
        assert!(is_pinned(&format!("localhost:5000/serve@sha256:{hex}")));
        assert!(!is_pinned("acr.io/serve:latest"));
        assert!(!is_pinned(&format!("@sha256:{hex}")));
        assert!(!is_pinned(&format!(
            "acr.io/serve@sha256:{}",
            "A".repeat(64)
        )));
        assert!(!is_pinned("acr.io/serve@sha256:abc"));
    }
}

//! OCI image layouts on disk (`oci-layout`, `index.json`, `blobs/sha256/…`):
//! what `package` writes for air-gapped use and `push` reads. Every blob
//! read back is checked against its digest.

use std::path::{Path, PathBuf};

use super::image::{Descriptor, Index, Manifest, INDEX_MEDIA_TYPE, MANIFEST_MEDIA_TYPE, REF_NAME};
use super::layer::{sha256_digest, Blob};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum LayoutError {
    #[error("{path}: {reason}")]
    Io { path: String, reason: String },
    #[error("{0}")]
    Invalid(String),
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> LayoutError + '_ {
    move |e| LayoutError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

const OCI_LAYOUT: &str = "{\"imageLayoutVersion\":\"1.0.0\"}";

fn blob_path(dir: &Path, digest: &str) -> Result<PathBuf, LayoutError> {
    let hex = digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| LayoutError::Invalid(format!("unsupported digest `{digest}`")))?;
    Ok(dir.join("blobs/sha256").join(hex))
}

/// Writes a layout holding one image: `blobs`, then its manifest, tagged `tag`.
/// An earlier layout in `dir` is replaced; any other non-empty folder is refused.
pub fn write(dir: &Path, blobs: &[&Blob], manifest: &Blob, tag: &str) -> Result<(), LayoutError> {
    if dir.join("oci-layout").is_file() {
        std::fs::remove_dir_all(dir).map_err(io(dir))?;
    } else if std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(LayoutError::Invalid(format!(
            "{} is not empty and holds no OCI layout: not overwriting it",
            dir.display()
        )));
    }
    let blob_dir = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blob_dir).map_err(io(&blob_dir))?;
    for blob in blobs.iter().copied().chain([manifest]) {
        let path = blob_path(dir, &blob.digest)?;
        std::fs::write(&path, &blob.data).map_err(io(&path))?;
    }
    let mut descriptor = descriptor(manifest);
    descriptor.annotations.insert(REF_NAME.into(), tag.into());
    let index = Index {
        schema_version: 2,
        media_type: Some(INDEX_MEDIA_TYPE.into()),
        manifests: vec![descriptor],
    };
    let index_path = dir.join("index.json");
    let json = serde_json::to_vec(&index).map_err(|e| LayoutError::Invalid(e.to_string()))?;
    std::fs::write(&index_path, json).map_err(io(&index_path))?;
    let layout_path = dir.join("oci-layout");
    std::fs::write(&layout_path, OCI_LAYOUT).map_err(io(&layout_path))
}

pub fn descriptor(blob: &Blob) -> Descriptor {
    Descriptor {
        media_type: blob.media_type.clone(),
        digest: blob.digest.clone(),
        size: blob.size(),
        annotations: Default::default(),
    }
}

/// An image read back from a layout: its manifest (bytes as stored, so the
/// digest is kept) and its parsed form.
#[derive(Debug)]
pub struct StoredImage {
    pub dir: PathBuf,
    pub tag: String,
    pub manifest: Blob,
    pub parsed: Manifest,
}

/// The image tagged `tag` in the layout at `dir`, or its only image.
pub fn read(dir: &Path, tag: Option<&str>) -> Result<StoredImage, LayoutError> {
    let index_path = dir.join("index.json");
    let text = std::fs::read(&index_path).map_err(io(&index_path))?;
    let index: Index = serde_json::from_slice(&text)
        .map_err(|e| LayoutError::Invalid(format!("{}: {e}", index_path.display())))?;
    let tag_of = |d: &Descriptor| d.annotations.get(REF_NAME).cloned().unwrap_or_default();
    let chosen = match tag {
        Some(tag) => index.manifests.iter().find(|d| tag_of(d) == tag),
        None if index.manifests.len() == 1 => index.manifests.first(),
        None => None,
    }
    .ok_or_else(|| {
        let tags: Vec<String> = index.manifests.iter().map(tag_of).collect();
        LayoutError::Invalid(format!(
            "{}: no image tagged {:?} (tags: {tags:?})",
            dir.display(),
            tag.unwrap_or("<the only one>")
        ))
    })?;
    if chosen.media_type != MANIFEST_MEDIA_TYPE {
        return Err(LayoutError::Invalid(format!(
            "{} is a {}, not an image manifest",
            chosen.digest, chosen.media_type
        )));
    }
    let manifest = read_blob(dir, chosen)?;
    let parsed: Manifest = serde_json::from_slice(&manifest.data)
        .map_err(|e| LayoutError::Invalid(format!("manifest {}: {e}", chosen.digest)))?;
    Ok(StoredImage {
        dir: dir.to_path_buf(),
        tag: tag_of(chosen),
        manifest,
        parsed,
    })
}

impl StoredImage {
    /// Config first, then layers: every blob the manifest references.
    pub fn blobs(&self) -> impl Iterator<Item = &Descriptor> {
        std::iter::once(&self.parsed.config).chain(&self.parsed.layers)
    }
}

/// Reads a blob and checks its size and digest.
pub fn read_blob(dir: &Path, descriptor: &Descriptor) -> Result<Blob, LayoutError> {
    let path = blob_path(dir, &descriptor.digest)?;
    let data = std::fs::read(&path).map_err(io(&path))?;
    let digest = sha256_digest(&data);
    if digest != descriptor.digest || data.len() as u64 != descriptor.size {
        return Err(LayoutError::Invalid(format!(
            "{}: {} bytes with digest {digest}, the descriptor says {} bytes, {}",
            path.display(),
            data.len(),
            descriptor.size,
            descriptor.digest
        )));
    }
    Ok(Blob {
        media_type: descriptor.media_type.clone(),
        digest,
        data,
    })
}

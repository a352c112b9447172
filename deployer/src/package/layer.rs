//! Reproducible layers: the same files give the same bytes, hence the same
//! digest. Entries are sorted by path and every parent folder is listed;
//! owners are numeric; every mtime is the one given (SOURCE_DATE_EPOCH);
//! no user or group names, no extended attributes; gzip with a fixed level,
//! no file name and a zero mtime in its header.

use std::collections::BTreeMap;
use std::io::Write;

use flate2::write::GzEncoder;
use flate2::Compression;
use sha2::{Digest, Sha256};

pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// A content-addressed blob of the image.
#[derive(Debug, Clone)]
pub struct Blob {
    pub media_type: String,
    /// `sha256:<hex>`
    pub digest: String,
    pub data: Vec<u8>,
}

impl Blob {
    pub fn new(media_type: &str, data: Vec<u8>) -> Blob {
        Blob {
            media_type: media_type.to_string(),
            digest: sha256_digest(&data),
            data,
        }
    }

    pub fn size(&self) -> u64 {
        self.data.len() as u64
    }
}

pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(data))
}

#[derive(Debug)]
enum Node {
    Dir,
    File(Vec<u8>),
}

#[derive(Debug)]
struct Entry {
    node: Node,
    mode: u32,
    owner: u64,
}

/// Files and folders of one layer, by path inside the image (no leading `/`).
#[derive(Debug, Default)]
pub struct LayerBuilder {
    entries: BTreeMap<String, Entry>,
}

/// A finished layer: its gzipped blob and the digest of the plain tar (the
/// image config's `diff_id`).
#[derive(Debug, Clone)]
pub struct Layer {
    /// What the layer holds, for the image history and reports.
    pub name: String,
    pub blob: Blob,
    pub diff_id: String,
    pub tar_size: u64,
}

impl LayerBuilder {
    /// A folder owned by `owner` (uid = gid). Parents are added as root's, 0755.
    pub fn dir(&mut self, path: &str, mode: u32, owner: u64) -> &mut Self {
        self.parents(path);
        self.entries.insert(
            path.trim_end_matches('/').to_string(),
            Entry {
                node: Node::Dir,
                mode,
                owner,
            },
        );
        self
    }

    /// A file owned by root.
    pub fn file(&mut self, path: &str, mode: u32, data: Vec<u8>) -> &mut Self {
        self.parents(path);
        self.entries.insert(
            path.to_string(),
            Entry {
                node: Node::File(data),
                mode,
                owner: 0,
            },
        );
        self
    }

    fn parents(&mut self, path: &str) {
        let mut parent = std::path::Path::new(path.trim_end_matches('/')).parent();
        while let Some(dir) = parent.filter(|d| !d.as_os_str().is_empty()) {
            self.entries
                .entry(dir.to_string_lossy().into_owned())
                .or_insert(Entry {
                    node: Node::Dir,
                    mode: 0o755,
                    owner: 0,
                });
            parent = dir.parent();
        }
    }

    pub fn finish(self, name: &str, mtime: u64) -> std::io::Result<Layer> {
        let mut tar = tar::Builder::new(Vec::new());
        for (path, entry) in &self.entries {
            let mut header = tar::Header::new_gnu();
            header.set_mode(entry.mode);
            header.set_uid(entry.owner);
            header.set_gid(entry.owner);
            header.set_mtime(mtime);
            match &entry.node {
                Node::Dir => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_size(0);
                    tar.append_data(&mut header, format!("{path}/"), std::io::empty())?;
                }
                Node::File(data) => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_size(data.len() as u64);
                    tar.append_data(&mut header, path, data.as_slice())?;
                }
            }
        }
        let plain = tar.into_inner()?;
        let mut gz = GzEncoder::new(Vec::new(), Compression::new(6));
        gz.write_all(&plain)?;
        Ok(Layer {
            name: name.to_string(),
            blob: Blob::new(LAYER_MEDIA_TYPE, gz.finish()?),
            diff_id: sha256_digest(&plain),
            tar_size: plain.len() as u64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(layer: &Layer) -> Vec<(String, u32, u64, u64)> {
        let plain = flate2::read::GzDecoder::new(layer.blob.data.as_slice());
        let mut archive = tar::Archive::new(plain);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                    h.mtime().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn insertion_order_does_not_change_the_digest() {
        let build = |order: &[(&str, &[u8])]| {
            let mut b = LayerBuilder::default();
            for (path, data) in order {
                b.file(path, 0o644, data.to_vec());
            }
            b.finish("t", 0).unwrap()
        };
        let a = build(&[("etc/b", b"2"), ("etc/a", b"1")]);
        let b = build(&[("etc/a", b"1"), ("etc/b", b"2")]);
        assert_eq!(a.blob.digest, b.blob.digest);
        assert_eq!(a.diff_id, b.diff_id);
        let c = build(&[("etc/a", b"1"), ("etc/b", b"3")]);
        assert_ne!(a.blob.digest, c.blob.digest);
    }

    #[test]
    fn parents_are_listed_with_fixed_owners_and_times() {
        let mut b = LayerBuilder::default();
        b.dir("home/nonroot", 0o755, 65532)
            .file("usr/local/bin/serve", 0o755, b"x".to_vec());
        let layer = b.finish("t", 1_700_000_000).unwrap();
        assert_eq!(
            entries(&layer),
            vec![
                ("home/".into(), 0o755, 0, 1_700_000_000),
                ("home/nonroot/".into(), 0o755, 65532, 1_700_000_000),
                ("usr/".into(), 0o755, 0, 1_700_000_000),
                ("usr/local/".into(), 0o755, 0, 1_700_000_000),
                ("usr/local/bin/".into(), 0o755, 0, 1_700_000_000),
                ("usr/local/bin/serve".into(), 0o755, 0, 1_700_000_000),
            ]
        );
    }
}

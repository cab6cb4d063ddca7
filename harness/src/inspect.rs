//! What an image file really holds: its container format, virtual size, and whether the guest
//! sees an installed disk, an ISO 9660 volume or nothing, read without booting it or running
//! an external tool.
//!
//! Our own small readers (a qcow2 cluster lookup, sector sniffing), independent of mockstack's
//! writers so that they can catch its mistakes. Tests cross-check against `qemu-img`.

use std::fs::File;
use std::io::{Cursor, Read, Seek, SeekFrom};
use std::path::Path;

use serde::Serialize;

/// The container format, as `qemu-img info` would name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerFormat {
    Qcow2,
    Raw,
    Vmdk,
    Vhdx,
    Vdi,
}

impl ContainerFormat {
    /// Glance's `disk_format` values this format may be declared as.
    pub fn glance_names(self) -> &'static [&'static str] {
        match self {
            ContainerFormat::Qcow2 => &["qcow2"],
            ContainerFormat::Raw => &["raw", "iso"],
            ContainerFormat::Vmdk => &["vmdk"],
            ContainerFormat::Vhdx => &["vhdx"],
            ContainerFormat::Vdi => &["vdi"],
        }
    }
}

/// What the guest would see on the disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Content {
    /// A partition table (MBR or GPT) or a boot sector: an installed system.
    InstalledDisk { table: String },
    /// An ISO 9660 volume: the installer, not an installed system.
    Iso9660 { volume_id: String },
    /// Only zeros where a boot sector would be.
    Empty,
    /// Data, but no boot sector or volume we know.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Inspection {
    pub format: ContainerFormat,
    pub virtual_size: u64,
    pub content: Content,
}

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("qcow2 header at byte {offset}: {message}")]
    Qcow2 { offset: u64, message: String },
}

/// Guest-visible bytes of an image, whatever its container.
trait GuestReader {
    fn virtual_size(&self) -> u64;
    /// Reads guest bytes at `offset`; bytes past the end, or unallocated, read as zeros.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), InspectError>;
}

pub fn inspect(path: &Path) -> Result<Inspection, InspectError> {
    let name = path.display().to_string();
    let file = File::open(path).map_err(|source| InspectError::Io { path: name.clone(), source })?;
    inspect_source(file, &name)
}

/// Inspects an image held in memory as [`inspect`] inspects a file; errors name it `<memory>`.
///
/// The same readers run over the bytes, so hostile images can be tried (fuzzed) without a file per case.
pub fn inspect_bytes(bytes: &[u8]) -> Result<Inspection, InspectError> {
    inspect_source(Cursor::new(bytes), "<memory>")
}

fn inspect_source<'a, S: Read + Seek + 'a>(mut source: S, name: &str) -> Result<Inspection, InspectError> {
    let io = |source| InspectError::Io { path: name.to_string(), source };
    let len = source.seek(SeekFrom::End(0)).map_err(io)?;
    let mut magic = [0u8; 8];
    let n = read_up_to(&mut source, 0, &mut magic).map_err(io)?;
    let magic = &magic[..n];
    let (format, mut reader): (ContainerFormat, Box<dyn GuestReader + 'a>) = if magic.starts_with(b"QFI\xfb") {
        (ContainerFormat::Qcow2, Box::new(Qcow2::open(source, len, name)?))
    } else {
        let format = if magic.starts_with(b"KDMV") {
            ContainerFormat::Vmdk
        } else if magic.starts_with(b"vhdxfile") {
            ContainerFormat::Vhdx
        } else if magic.starts_with(b"<<< ") {
            ContainerFormat::Vdi
        } else {
            ContainerFormat::Raw
        };
        (format, Box::new(Raw { source, len, path: name.to_string() }))
    };
    let content = if matches!(format, ContainerFormat::Qcow2 | ContainerFormat::Raw) {
        classify(reader.as_mut())?
    } else {
        Content::Unknown
    };
    Ok(Inspection { format, virtual_size: reader.virtual_size(), content })
}

fn classify(reader: &mut dyn GuestReader) -> Result<Content, InspectError> {
    let mut descriptor = [0u8; 40];
    reader.read_at(32768, &mut descriptor)?;
    if &descriptor[1..6] == b"CD001" {
        let volume_id = String::from_utf8_lossy(&descriptor[40 - 32..]).trim().to_string();
        let mut pvd = [0u8; 72];
        reader.read_at(32768, &mut pvd)?;
        let volume_id =
            if pvd[0] == 1 { String::from_utf8_lossy(&pvd[40..72]).trim_end().to_string() } else { volume_id };
        return Ok(Content::Iso9660 { volume_id });
    }
    let mut sector = [0u8; 512];
    reader.read_at(0, &mut sector)?;
    let mut gpt = [0u8; 8];
    reader.read_at(512, &mut gpt)?;
    if &gpt == b"EFI PART" {
        return Ok(Content::InstalledDisk { table: "gpt".into() });
    }
    if sector[510] == 0x55 && sector[511] == 0xAA {
        let has_partition = (0..4).any(|i| {
            let entry = &sector[446 + i * 16..446 + (i + 1) * 16];
            entry[4] != 0
        });
        let table = if has_partition { "mbr" } else { "boot sector" };
        return Ok(Content::InstalledDisk { table: table.into() });
    }
    let mut probe = vec![0u8; 64 * 1024];
    reader.read_at(0, &mut probe)?;
    if probe.iter().all(|b| *b == 0) { Ok(Content::Empty) } else { Ok(Content::Unknown) }
}

fn read_up_to(file: &mut (impl Read + Seek), offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
    file.seek(SeekFrom::Start(offset))?;
    let mut total = 0;
    while total < buf.len() {
        let n = file.read(&mut buf[total..])?;
        if n == 0 {
            break;
        }
        total += n;
    }
    Ok(total)
}

struct Raw<S> {
    source: S,
    len: u64,
    path: String,
}

impl<S: Read + Seek> GuestReader for Raw<S> {
    fn virtual_size(&self) -> u64 {
        self.len
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), InspectError> {
        buf.fill(0);
        if offset < self.len {
            read_up_to(&mut self.source, offset, buf)
                .map_err(|source| InspectError::Io { path: self.path.clone(), source })?;
        }
        Ok(())
    }
}

/// Just enough qcow2 (versions 2 and 3) to read guest clusters: no backing files, compression
/// or encryption, which an image made by a snapshot does not use.
struct Qcow2<S> {
    file: S,
    path: String,
    cluster_bits: u32,
    size: u64,
    l1: Vec<u64>,
}

const QCOW2_OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;

impl<S: Read + Seek> Qcow2<S> {
    fn open(mut file: S, len: u64, path: &str) -> Result<Qcow2<S>, InspectError> {
        let path = path.to_string();
        let io = |source| InspectError::Io { path: path.clone(), source };
        let mut header = [0u8; 72];
        let n = read_up_to(&mut file, 0, &mut header).map_err(io)?;
        let bad = |offset: u64, message: &str| InspectError::Qcow2 { offset, message: message.into() };
        if n < 72 {
            return Err(bad(0, "file too short for a qcow2 header"));
        }
        let be32 = |at: usize| u32::from_be_bytes(header[at..at + 4].try_into().expect("4 bytes"));
        let be64 = |at: usize| u64::from_be_bytes(header[at..at + 8].try_into().expect("8 bytes"));
        let version = be32(4);
        if !(2..=3).contains(&version) {
            return Err(bad(4, &format!("unsupported version {version}")));
        }
        if be64(8) != 0 {
            return Err(bad(8, "has a backing file; inspect the flattened image instead"));
        }
        let cluster_bits = be32(20);
        if !(9..=21).contains(&cluster_bits) {
            return Err(bad(20, &format!("cluster_bits {cluster_bits} out of range")));
        }
        let size = be64(24);
        if be32(32) != 0 {
            return Err(bad(32, "encrypted images are not supported"));
        }
        let l1_size = be32(36) as u64;
        let l1_offset = be64(40);
        if l1_size * 8 > len || l1_offset > len {
            return Err(bad(36, "L1 table lies outside the file"));
        }
        let mut raw = vec![0u8; (l1_size * 8) as usize];
        read_up_to(&mut file, l1_offset, &mut raw).map_err(io)?;
        let l1 = raw.chunks_exact(8).map(|c| u64::from_be_bytes(c.try_into().expect("8 bytes"))).collect();
        Ok(Qcow2 { file, path, cluster_bits, size, l1 })
    }

    /// File offset of the guest cluster holding `offset`; None when unallocated or zero.
    fn cluster_offset(&mut self, offset: u64) -> Result<Option<u64>, InspectError> {
        let cluster_size = 1u64 << self.cluster_bits;
        let l2_entries = cluster_size / 8;
        let l1_index = (offset / cluster_size / l2_entries) as usize;
        let Some(l1_entry) = self.l1.get(l1_index) else { return Ok(None) };
        let l2_offset = l1_entry & QCOW2_OFFSET_MASK;
        if l2_offset == 0 {
            return Ok(None);
        }
        let l2_index = (offset / cluster_size) % l2_entries;
        let mut entry = [0u8; 8];
        read_up_to(&mut self.file, l2_offset + l2_index * 8, &mut entry)
            .map_err(|source| InspectError::Io { path: self.path.clone(), source })?;
        let entry = u64::from_be_bytes(entry);
        if entry & (1 << 62) != 0 {
            return Err(InspectError::Qcow2 {
                offset: l2_offset,
                message: "compressed clusters are not supported".into(),
            });
        }
        let data = entry & QCOW2_OFFSET_MASK;
        if data == 0 || entry & 1 != 0 { Ok(None) } else { Ok(Some(data)) }
    }
}

impl<S: Read + Seek> GuestReader for Qcow2<S> {
    fn virtual_size(&self) -> u64 {
        self.size
    }

    fn read_at(&mut self, mut offset: u64, buf: &mut [u8]) -> Result<(), InspectError> {
        let cluster_size = 1u64 << self.cluster_bits;
        let mut done = 0;
        while done < buf.len() {
            let in_cluster = offset % cluster_size;
            let n = ((cluster_size - in_cluster) as usize).min(buf.len() - done);
            let chunk = &mut buf[done..done + n];
            chunk.fill(0);
            if offset < self.size
                && let Some(file_offset) = self.cluster_offset(offset)?
            {
                read_up_to(&mut self.file, file_offset + in_cluster, chunk)
                    .map_err(|source| InspectError::Io { path: self.path.clone(), source })?;
            }
            done += n;
            offset += n as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn write(dir: &Path, name: &str, data: &[u8]) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, data).unwrap();
        p
    }

    fn iso_like() -> Vec<u8> {
        let mut data = vec![0u8; 40 * 1024];
        data[32768] = 1;
        data[32769..32774].copy_from_slice(b"CD001");
        data[32808..32840].copy_from_slice(format!("{:<32}", "UBUNTU_24_04").as_bytes());
        data
    }

    fn mbr_disk() -> Vec<u8> {
        let mut data = vec![0u8; 1024 * 1024];
        data[446 + 4] = 0x83;
        data[510] = 0x55;
        data[511] = 0xAA;
        data
    }

    /// Raw files, and the same files converted by qemu-img to qcow2: our reader must agree.
    #[test]
    fn classifies_raw_and_qemu_img_qcow2_alike() {
        let dir = tempfile::tempdir().unwrap();
        let cases: [(&str, Vec<u8>, Content); 4] = [
            ("iso", iso_like(), Content::Iso9660 { volume_id: "UBUNTU_24_04".into() }),
            ("mbr", mbr_disk(), Content::InstalledDisk { table: "mbr".into() }),
            ("empty", vec![0u8; 256 * 1024], Content::Empty),
            ("junk", vec![7u8; 4096], Content::Unknown),
        ];
        for (name, data, expected) in cases {
            let raw = write(dir.path(), &format!("{name}.raw"), &data);
            let got = inspect(&raw).unwrap();
            assert_eq!(
                (got.format, got.virtual_size, &got.content),
                (ContainerFormat::Raw, data.len() as u64, &expected),
                "{name}"
            );
            let qcow = dir.path().join(format!("{name}.qcow2"));
            let status = Command::new("qemu-img")
                .args(["convert", "-f", "raw", "-O", "qcow2"])
                .arg(&raw)
                .arg(&qcow)
                .status()
                .expect("qemu-img is installed (cargo xtask setup)");
            assert!(status.success());
            let got = inspect(&qcow).unwrap();
            assert_eq!(got.format, ContainerFormat::Qcow2, "{name}");
            assert_eq!(got.content, expected, "{name} as qcow2");
            assert!(got.virtual_size >= data.len() as u64);
        }
    }

    #[test]
    fn blank_qcow2_from_qemu_img_is_empty_with_its_virtual_size() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("blank.qcow2");
        assert!(
            Command::new("qemu-img")
                .args(["create", "-q", "-f", "qcow2"])
                .arg(&p)
                .arg("10G")
                .status()
                .unwrap()
                .success()
        );
        let got = inspect(&p).unwrap();
        assert_eq!((got.format, got.virtual_size, got.content), (ContainerFormat::Qcow2, 10 << 30, Content::Empty));
    }

    #[test]
    fn truncated_or_hostile_qcow2_headers_are_clean_errors() {
        let dir = tempfile::tempdir().unwrap();
        let short = write(dir.path(), "short", b"QFI\xfb\0\0\0\x03");
        assert!(inspect(&short).unwrap_err().to_string().contains("too short"));
        let mut header = vec![0u8; 72];
        header[..4].copy_from_slice(b"QFI\xfb");
        header[7] = 3;
        header[23] = 16;
        header[36..40].copy_from_slice(&u32::MAX.to_be_bytes());
        let hostile = write(dir.path(), "hostile", &header);
        assert!(inspect(&hostile).unwrap_err().to_string().contains("outside the file"));
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_inspect_without_panic(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048), qcow in proptest::prelude::any::<bool>()) {
            let dir = tempfile::tempdir().unwrap();
            let mut data = data;
            if qcow && data.len() >= 4 {
                data[..4].copy_from_slice(b"QFI\xfb");
            }
            let p = write(dir.path(), "x", &data);
            let _ = inspect(&p);
        }
    }
}

//! ISO 9660 (ECMA-119) volumes with Joliet names and El Torito boot entries: a deterministic streaming writer and a robust reader.
//!
//! The writer lays a volume out as: system area (16 sectors), primary volume descriptor, El Torito
//! boot record, Joliet supplementary descriptor, terminator, boot catalog, path tables (L and M,
//! primary then Joliet), primary directories, Joliet directories, then file data in path order.
//! Files larger than one extent are stored as multi-extent files (interchange level 3). Output
//! depends only on the builder's content, so equal input gives byte-identical images.
//!
//! The reader trusts nothing: every offset and length is checked against the image size and every
//! loop is bounded, so any byte string yields an [`IsoImage`] or a [`MediaError`] naming the byte offset.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use jiff::civil::DateTime;

use super::{MediaError, lookup_key};
use crate::guest::Medium;

/// Logical block size of every volume this module writes and reads.
pub const SECTOR_SIZE: u64 = 2048;
const SECTOR: usize = SECTOR_SIZE as usize;
/// The largest extent a directory record can describe, a whole number of sectors below 4 GiB.
const MAX_EXTENT: u64 = 0xFFFF_F800;
/// Joliet allows 64 UCS-2 characters in a name.
const MAX_NAME_UNITS: usize = 64;
/// Primary (ISO 9660 level 2/3) identifiers are at most 30 characters plus the `;1` version.
const MAX_PRIMARY_NAME: usize = 30;
const FLAG_DIRECTORY: u8 = 0x02;
const FLAG_MULTI_EXTENT: u8 = 0x80;
const JOLIET_ESCAPES: [&[u8; 3]; 3] = [b"%/@", b"%/C", b"%/E"];
const EL_TORITO_ID: &[u8] = b"EL TORITO SPECIFICATION";

/// What a file on a volume is made of; large content is streamed when the volume is written.
pub enum FileContent {
    Bytes(Vec<u8>),
    /// A run of zero bytes (placeholders, sparse payloads).
    Zeros(u64),
    /// A host file, read when the volume is written; its length is taken when it is added.
    HostFile(PathBuf),
    /// Exactly `len` bytes from a reader, consumed when the volume is written.
    Reader {
        len: u64,
        reader: Box<dyn Read + Send>,
    },
}

impl From<Vec<u8>> for FileContent {
    fn from(bytes: Vec<u8>) -> Self {
        FileContent::Bytes(bytes)
    }
}

impl From<&[u8]> for FileContent {
    fn from(bytes: &[u8]) -> Self {
        FileContent::Bytes(bytes.to_vec())
    }
}

impl From<&str> for FileContent {
    fn from(text: &str) -> Self {
        FileContent::Bytes(text.as_bytes().to_vec())
    }
}

impl From<String> for FileContent {
    fn from(text: String) -> Self {
        FileContent::Bytes(text.into_bytes())
    }
}

/// The firmware an El Torito boot entry is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BootPlatform {
    /// PC BIOS (platform id 0x00).
    Bios,
    /// UEFI (platform id 0xEF).
    Efi,
}

impl BootPlatform {
    fn id(self) -> u8 {
        match self {
            BootPlatform::Bios => 0x00,
            BootPlatform::Efi => 0xEF,
        }
    }

    fn from_id(id: u8) -> Option<Self> {
        match id {
            0x00 => Some(BootPlatform::Bios),
            0xEF => Some(BootPlatform::Efi),
            _ => None,
        }
    }
}

/// A no-emulation El Torito boot entry whose image is a file on the volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootEntry {
    pub platform: BootPlatform,
    /// Path of the boot image on the volume, e.g. `isolinux/isolinux.bin`.
    pub image: String,
    /// 512-byte sectors the firmware loads; `None` means 4 for BIOS (isolinux's choice) and the whole image for EFI.
    pub load_sectors: Option<u16>,
}

struct DirNode {
    name: String,
    parent: usize,
    subdirs: Vec<usize>,
    files: Vec<usize>,
}

struct FileNode {
    name: String,
    parent: usize,
    len: u64,
    content: FileContent,
}

/// Builds an ISO 9660 volume in memory (metadata only) and streams it to a writer.
pub struct IsoBuilder {
    volume_id: String,
    system_id: String,
    publisher: String,
    application: String,
    created: DateTime,
    joliet: bool,
    boot: Vec<BootEntry>,
    max_extent: u64,
    dirs: Vec<DirNode>,
    files: Vec<FileNode>,
    paths: HashMap<String, Node>,
}

#[derive(Debug, Clone, Copy)]
enum Node {
    Dir(usize),
    File(usize),
}

impl IsoBuilder {
    /// A volume named `volume_id` (at most 32 printable ASCII characters) whose every timestamp is `created`.
    pub fn new(volume_id: &str, created: DateTime) -> Result<Self, MediaError> {
        if volume_id.len() > 32 || !volume_id.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err(MediaError::InvalidPath {
                path: volume_id.to_owned(),
                reason: "a volume id is at most 32 printable ascii characters".to_owned(),
            });
        }
        let mut paths = HashMap::new();
        paths.insert("/".to_owned(), Node::Dir(0));
        Ok(IsoBuilder {
            volume_id: volume_id.to_owned(),
            system_id: String::new(),
            publisher: String::new(),
            application: "ISOHARNESS MOCKSTACK".to_owned(),
            created,
            joliet: true,
            boot: Vec::new(),
            max_extent: MAX_EXTENT,
            dirs: vec![DirNode { name: String::new(), parent: 0, subdirs: Vec::new(), files: Vec::new() }],
            files: Vec::new(),
            paths,
        })
    }

    /// The system identifier field (e.g. "LINUX", "WIN32"); ASCII, truncated to 32 characters.
    pub fn system_id(mut self, system_id: &str) -> Self {
        self.system_id = ascii_field(system_id);
        self
    }

    /// The publisher field; ASCII, truncated to 128 characters.
    pub fn publisher(mut self, publisher: &str) -> Self {
        self.publisher = ascii_field(publisher);
        self
    }

    /// Whether to add a Joliet supplementary volume descriptor (on by default).
    pub fn joliet(mut self, joliet: bool) -> Self {
        self.joliet = joliet;
        self
    }

    /// Caps extents below the format's 4 GiB limit, so tests can exercise multi-extent files cheaply.
    #[doc(hidden)]
    pub fn max_extent_sectors(mut self, sectors: u32) -> Self {
        self.max_extent = (u64::from(sectors.max(1)) * SECTOR_SIZE).min(MAX_EXTENT);
        self
    }

    /// Adds an El Torito boot entry; the first one is the default entry. The image must be added as a file.
    pub fn boot(mut self, entry: BootEntry) -> Self {
        self.boot.push(entry);
        self
    }

    /// Adds a directory (and its parents).
    pub fn add_dir(&mut self, path: &str) -> Result<(), MediaError> {
        let components = split_path(path)?;
        self.ensure_dir(path, &components).map(|_| ())
    }

    /// Adds a file (creating its parent directories).
    pub fn add_file(&mut self, path: &str, content: impl Into<FileContent>) -> Result<(), MediaError> {
        let content = content.into();
        let components = split_path(path)?;
        let Some((name, parents)) = components.split_last() else {
            return Err(invalid(path, "a file needs a name"));
        };
        let len = match &content {
            FileContent::Bytes(bytes) => bytes.len() as u64,
            FileContent::Zeros(len) | FileContent::Reader { len, .. } => *len,
            FileContent::HostFile(host) => {
                std::fs::metadata(host).map_err(|source| MediaError::Io { path: host.clone(), source })?.len()
            }
        };
        let parent = self.ensure_dir(path, parents)?;
        let key = lookup_key(&components.join("/"));
        if self.paths.contains_key(&key) {
            return Err(MediaError::DuplicatePath { path: path.to_owned() });
        }
        let index = self.files.len();
        self.files.push(FileNode { name: (*name).to_owned(), parent, len, content });
        self.dirs[parent].files.push(index);
        self.paths.insert(key, Node::File(index));
        Ok(())
    }

    fn ensure_dir(&mut self, path: &str, components: &[&str]) -> Result<usize, MediaError> {
        let mut current = 0;
        for depth in 1..=components.len() {
            let key = lookup_key(&components[..depth].join("/"));
            current = match self.paths.get(&key) {
                Some(Node::Dir(index)) => *index,
                Some(Node::File(_)) => return Err(MediaError::DuplicatePath { path: path.to_owned() }),
                None => {
                    let index = self.dirs.len();
                    let name = components[depth - 1].to_owned();
                    self.dirs.push(DirNode { name, parent: current, subdirs: Vec::new(), files: Vec::new() });
                    self.dirs[current].subdirs.push(index);
                    self.paths.insert(key, Node::Dir(index));
                    index
                }
            };
        }
        Ok(current)
    }

    /// Writes the volume; returns the number of bytes written.
    pub fn write(self, out: &mut impl Write) -> Result<u64, MediaError> {
        let layout = VolumeLayout::compute(&self)?;
        let mut metadata = Vec::with_capacity(layout.metadata_sectors as usize * SECTOR);
        metadata.resize(16 * SECTOR, 0);
        self.write_descriptors(&layout, &mut metadata);
        pad_to_sector(&mut metadata);
        if let Some(catalog) = layout.boot_catalog {
            debug_assert_eq!(metadata.len() as u64, u64::from(catalog) * SECTOR_SIZE);
            metadata.extend_from_slice(&self.boot_catalog(&layout)?);
        }
        for tree in &layout.trees {
            for big_endian in [false, true] {
                metadata.extend_from_slice(&tree.path_table(big_endian));
                pad_to_sector(&mut metadata);
            }
        }
        for tree in &layout.trees {
            for &dir in &tree.order {
                metadata.extend_from_slice(&self.directory_extent(&layout, tree, dir));
            }
        }
        debug_assert_eq!(metadata.len() as u64, u64::from(layout.metadata_sectors) * SECTOR_SIZE);
        out.write_all(&metadata).map_err(MediaError::Write)?;
        let mut written = metadata.len() as u64;
        drop(metadata);
        let volume_paths: Vec<String> = (0..self.files.len()).map(|file| self.file_path(file)).collect();
        let mut files: Vec<Option<FileContent>> = self.files.into_iter().map(|file| Some(file.content)).collect();
        for &file in &layout.data_order {
            let len = layout.file_len[file];
            let Some(content) = files[file].take() else { continue };
            written += stream_content(content, len, &volume_paths[file], out)?;
            let padding = padding_to_sector(len);
            io::copy(&mut io::repeat(0).take(padding), out).map_err(MediaError::Write)?;
            written += padding;
        }
        debug_assert_eq!(written, u64::from(layout.total_sectors) * SECTOR_SIZE);
        Ok(written)
    }

    /// The volume's path of a file, `/`-separated without a leading slash.
    fn file_path(&self, file: usize) -> String {
        let mut parts = vec![self.files[file].name.as_str()];
        let mut dir = self.files[file].parent;
        while dir != 0 {
            parts.push(&self.dirs[dir].name);
            dir = self.dirs[dir].parent;
        }
        parts.reverse();
        parts.join("/")
    }

    fn write_descriptors(&self, layout: &VolumeLayout, out: &mut Vec<u8>) {
        let primary = &layout.trees[0];
        out.extend_from_slice(&self.volume_descriptor(layout, primary));
        if let Some(catalog) = layout.boot_catalog {
            let mut record = vec![0u8; SECTOR];
            record[0] = 0;
            record[1..6].copy_from_slice(b"CD001");
            record[6] = 1;
            record[7..7 + EL_TORITO_ID.len()].copy_from_slice(EL_TORITO_ID);
            record[0x47..0x4B].copy_from_slice(&catalog.to_le_bytes());
            out.extend_from_slice(&record);
        }
        if let Some(joliet) = layout.trees.get(1) {
            out.extend_from_slice(&self.volume_descriptor(layout, joliet));
        }
        let mut terminator = vec![0u8; SECTOR];
        terminator[0] = 255;
        terminator[1..6].copy_from_slice(b"CD001");
        terminator[6] = 1;
        out.extend_from_slice(&terminator);
    }

    fn volume_descriptor(&self, layout: &VolumeLayout, tree: &Tree) -> Vec<u8> {
        let joliet = tree.joliet;
        let text = |value: &str, len: usize| if joliet { ucs2_field(value, len) } else { ascii_padded(value, len) };
        let mut vd = vec![0u8; SECTOR];
        vd[0] = if joliet { 2 } else { 1 };
        vd[1..6].copy_from_slice(b"CD001");
        vd[6] = 1;
        vd[8..40].copy_from_slice(&text(&self.system_id, 32));
        vd[40..72].copy_from_slice(&text(&self.volume_id, 32));
        vd[80..88].copy_from_slice(&both_u32(layout.total_sectors));
        if joliet {
            vd[88..91].copy_from_slice(JOLIET_ESCAPES[2]);
        }
        vd[120..124].copy_from_slice(&both_u16(1));
        vd[124..128].copy_from_slice(&both_u16(1));
        vd[128..132].copy_from_slice(&both_u16(SECTOR as u16));
        vd[132..140].copy_from_slice(&both_u32(tree.path_table_size));
        vd[140..144].copy_from_slice(&tree.path_table_lba[0].to_le_bytes());
        vd[148..152].copy_from_slice(&tree.path_table_lba[1].to_be_bytes());
        let root = directory_record(&[0], tree.dir_lba[0], tree.dir_size[0], FLAG_DIRECTORY, &self.record_date());
        vd[156..190].copy_from_slice(&root);
        vd[190..318].copy_from_slice(&text("", 128));
        vd[318..446].copy_from_slice(&text(&self.publisher, 128));
        vd[446..574].copy_from_slice(&text("", 128));
        vd[574..702].copy_from_slice(&text(&self.application, 128));
        for field in [702..739, 739..776, 776..813] {
            let len = field.len();
            let mut value = text("", len - len % 2);
            value.resize(len, if joliet { 0 } else { b' ' });
            vd[field].copy_from_slice(&value);
        }
        let date = self.descriptor_date();
        vd[813..830].copy_from_slice(&date);
        vd[830..847].copy_from_slice(&date);
        vd[847..864].copy_from_slice(&unset_descriptor_date());
        vd[864..881].copy_from_slice(&date);
        vd[881] = 1;
        vd
    }

    fn boot_catalog(&self, layout: &VolumeLayout) -> Result<Vec<u8>, MediaError> {
        let mut catalog = vec![0u8; SECTOR];
        let entries_fit = (SECTOR - 64) / 64 + 1;
        if self.boot.len() > entries_fit {
            return Err(MediaError::TooLarge { reason: format!("at most {entries_fit} boot entries fit the catalog") });
        }
        let mut entry_bytes = Vec::new();
        for entry in &self.boot {
            let image_key = lookup_key(&entry.image);
            let Some(Node::File(file)) = self.paths.get(&image_key) else {
                return Err(invalid(&entry.image, "boot image is not a file on the volume"));
            };
            let len = layout.file_len[*file];
            let load_sectors = entry.load_sectors.unwrap_or(match entry.platform {
                BootPlatform::Bios => 4,
                BootPlatform::Efi => len.div_ceil(512).min(u64::from(u16::MAX)) as u16,
            });
            let mut bytes = [0u8; 32];
            bytes[0] = 0x88;
            bytes[6..8].copy_from_slice(&load_sectors.to_le_bytes());
            bytes[8..12].copy_from_slice(&layout.file_lba[*file].to_le_bytes());
            entry_bytes.push((entry.platform, bytes));
        }
        let Some(((default_platform, default_entry), sections)) = entry_bytes.split_first() else {
            return Ok(catalog);
        };
        catalog[0] = 1;
        catalog[1] = default_platform.id();
        catalog[4..4 + 14].copy_from_slice(b"ISOHARNESS MOC");
        catalog[30] = 0x55;
        catalog[31] = 0xAA;
        let sum =
            catalog[..32].chunks(2).fold(0u16, |sum, word| sum.wrapping_add(u16::from_le_bytes([word[0], word[1]])));
        catalog[28..30].copy_from_slice(&0u16.wrapping_sub(sum).to_le_bytes());
        catalog[32..64].copy_from_slice(default_entry);
        for (index, (platform, entry)) in sections.iter().enumerate() {
            let header = 64 + index * 64;
            catalog[header] = if index + 1 == sections.len() { 0x91 } else { 0x90 };
            catalog[header + 1] = platform.id();
            catalog[header + 2..header + 4].copy_from_slice(&1u16.to_le_bytes());
            catalog[header + 32..header + 64].copy_from_slice(entry);
        }
        Ok(catalog)
    }

    fn directory_extent(&self, layout: &VolumeLayout, tree: &Tree, dir: usize) -> Vec<u8> {
        let date = self.record_date();
        let mut extent = Vec::with_capacity(tree.dir_size[dir] as usize);
        let parent = self.dirs[dir].parent;
        let mut push = |record: Vec<u8>| {
            let used = extent.len() % SECTOR;
            if used + record.len() > SECTOR {
                extent.resize(extent.len() + SECTOR - used, 0);
            }
            extent.extend_from_slice(&record);
        };
        push(directory_record(&[0], tree.dir_lba[dir], tree.dir_size[dir], FLAG_DIRECTORY, &date));
        push(directory_record(&[1], tree.dir_lba[parent], tree.dir_size[parent], FLAG_DIRECTORY, &date));
        for (node, identifier) in &tree.children[dir] {
            match *node {
                Node::Dir(sub) => {
                    push(directory_record(identifier, tree.dir_lba[sub], tree.dir_size[sub], FLAG_DIRECTORY, &date))
                }
                Node::File(file) => {
                    for (lba, len, last) in file_extents(layout.file_lba[file], layout.file_len[file], self.max_extent)
                    {
                        let flags = if last { 0 } else { FLAG_MULTI_EXTENT };
                        push(directory_record(identifier, lba, len, flags, &date));
                    }
                }
            }
        }
        pad_to_sector(&mut extent);
        extent
    }

    fn record_date(&self) -> [u8; 7] {
        let t = self.created;
        [
            (i32::from(t.year()) - 1900).clamp(0, 255) as u8,
            t.month() as u8,
            t.day() as u8,
            t.hour() as u8,
            t.minute() as u8,
            t.second() as u8,
            0,
        ]
    }

    fn descriptor_date(&self) -> [u8; 17] {
        let t = self.created;
        let text = format!(
            "{:04}{:02}{:02}{:02}{:02}{:02}{:02}",
            t.year().clamp(1, 9999),
            t.month(),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.subsec_nanosecond() / 10_000_000
        );
        let mut date = [0u8; 17];
        date[..16].copy_from_slice(text.as_bytes());
        date
    }
}

/// The extents of a file as (lba, length, is_last).
fn file_extents(first_lba: u32, len: u64, max_extent: u64) -> Vec<(u32, u32, bool)> {
    let count = len.div_ceil(max_extent).max(1);
    (0..count)
        .map(|index| {
            let offset = index * max_extent;
            let extent_len = (len - offset).min(max_extent);
            (first_lba + (offset / SECTOR_SIZE) as u32, extent_len as u32, index + 1 == count)
        })
        .collect()
}

fn stream_content(content: FileContent, len: u64, volume_path: &str, out: &mut impl Write) -> Result<u64, MediaError> {
    let short = |path: PathBuf, copied: u64| MediaError::Io {
        path,
        source: io::Error::new(io::ErrorKind::UnexpectedEof, format!("ended after {copied} of {len} bytes")),
    };
    match content {
        FileContent::Bytes(bytes) => out.write_all(&bytes).map_err(MediaError::Write)?,
        FileContent::Zeros(len) => {
            io::copy(&mut io::repeat(0).take(len), out).map_err(MediaError::Write)?;
        }
        FileContent::HostFile(path) => {
            let file = File::open(&path).map_err(|source| MediaError::Io { path: path.clone(), source })?;
            let copied = copy_exact(file.take(len), out, &path)?;
            if copied != len {
                return Err(short(path, copied));
            }
        }
        FileContent::Reader { len, reader } => {
            let path = PathBuf::from(volume_path);
            let copied = copy_exact(reader.take(len), out, &path)?;
            if copied != len {
                return Err(short(path, copied));
            }
        }
    }
    Ok(len)
}

/// Copies a reader to the output, telling read errors (the source's) from write errors (the output's).
fn copy_exact(mut reader: impl Read, out: &mut impl Write, path: &Path) -> Result<u64, MediaError> {
    let mut buffer = vec![0u8; 64 * 1024];
    let mut copied = 0;
    loop {
        let read = match reader.read(&mut buffer) {
            Ok(0) => return Ok(copied),
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => return Err(MediaError::Io { path: path.to_path_buf(), source }),
        };
        out.write_all(&buffer[..read]).map_err(MediaError::Write)?;
        copied += read as u64;
    }
}

/// One directory hierarchy (primary or Joliet) laid out on the volume.
struct Tree {
    joliet: bool,
    /// Per directory, its children sorted as the tree's records are, with their identifiers.
    children: Vec<Vec<(Node, Vec<u8>)>>,
    /// Directories in path-table order (breadth first, sorted).
    order: Vec<usize>,
    dir_lba: Vec<u32>,
    dir_size: Vec<u32>,
    /// Directory names as path-table identifiers.
    dir_identifier: Vec<Vec<u8>>,
    dir_parent: Vec<usize>,
    path_table_size: u32,
    path_table_lba: [u32; 2],
}

impl Tree {
    fn path_table(&self, big_endian: bool) -> Vec<u8> {
        let mut number = vec![0u16; self.dir_lba.len()];
        for (position, &dir) in self.order.iter().enumerate() {
            number[dir] = (position + 1) as u16;
        }
        let mut table = Vec::with_capacity(self.path_table_size as usize);
        for &dir in &self.order {
            let identifier: &[u8] = if dir == 0 { &[0] } else { &self.dir_identifier[dir] };
            let parent = number[self.parent_of(dir)];
            table.push(identifier.len() as u8);
            table.push(0);
            let lba = self.dir_lba[dir];
            table.extend_from_slice(&if big_endian { lba.to_be_bytes() } else { lba.to_le_bytes() });
            table.extend_from_slice(&if big_endian { parent.to_be_bytes() } else { parent.to_le_bytes() });
            table.extend_from_slice(identifier);
            if identifier.len() % 2 == 1 {
                table.push(0);
            }
        }
        table
    }

    fn parent_of(&self, dir: usize) -> usize {
        self.dir_parent[dir]
    }
}

/// Where everything of a volume goes: the sector of every directory, path table and file.
struct VolumeLayout {
    trees: Vec<Tree>,
    boot_catalog: Option<u32>,
    file_lba: Vec<u32>,
    file_len: Vec<u64>,
    data_order: Vec<usize>,
    metadata_sectors: u32,
    total_sectors: u32,
}

impl VolumeLayout {
    fn compute(builder: &IsoBuilder) -> Result<Self, MediaError> {
        let mut trees = vec![build_tree(builder, false)?];
        if builder.joliet {
            trees.push(build_tree(builder, true)?);
        }
        let too_many = || MediaError::TooLarge { reason: "the volume exceeds 2^32 sectors".to_owned() };
        let mut next: u64 = 16 + 1 + 1; // system area, primary descriptor, terminator
        next += u64::from(!builder.boot.is_empty()) + u64::from(builder.joliet);
        let boot_catalog = (!builder.boot.is_empty()).then(|| {
            next += 1;
            (next - 1) as u32
        });
        for tree in &mut trees {
            let size = tree.path_table(false).len() as u64;
            tree.path_table_size = u32::try_from(size).map_err(|_| too_many())?;
            for slot in 0..2 {
                tree.path_table_lba[slot] = next as u32;
                next += size.div_ceil(SECTOR_SIZE).max(1);
            }
        }
        for tree in &mut trees {
            for &dir in &tree.order.clone() {
                tree.dir_lba[dir] = u32::try_from(next).map_err(|_| too_many())?;
                next += u64::from(tree.dir_size[dir]) / SECTOR_SIZE;
            }
        }
        let metadata_sectors = u32::try_from(next).map_err(|_| too_many())?;
        let mut data_order: Vec<usize> = (0..builder.files.len()).collect();
        let paths: Vec<String> = data_order.iter().map(|&file| builder.file_path(file)).collect();
        data_order.sort_by(|&a, &b| paths[a].cmp(&paths[b]));
        let mut file_lba = vec![0u32; builder.files.len()];
        let file_len: Vec<u64> = builder.files.iter().map(|file| file.len).collect();
        for &file in &data_order {
            file_lba[file] = u32::try_from(next).map_err(|_| too_many())?;
            next += file_len[file].div_ceil(SECTOR_SIZE);
        }
        let total_sectors = u32::try_from(next).map_err(|_| too_many())?;
        // Directory sizes depend on how many extents each file needs, known before any placement.
        Ok(VolumeLayout { trees, boot_catalog, file_lba, file_len, data_order, metadata_sectors, total_sectors })
    }
}

fn build_tree(builder: &IsoBuilder, joliet: bool) -> Result<Tree, MediaError> {
    let dir_count = builder.dirs.len();
    let mut children = Vec::with_capacity(dir_count);
    let mut dir_identifier = vec![Vec::new(); dir_count];
    for dir in &builder.dirs {
        let mut entries: Vec<(Node, Vec<u8>)> = Vec::new();
        let mut taken = HashSet::new();
        let mut named: Vec<(Node, &str)> =
            dir.subdirs.iter().map(|&d| (Node::Dir(d), builder.dirs[d].name.as_str())).collect();
        named.extend(dir.files.iter().map(|&f| (Node::File(f), builder.files[f].name.as_str())));
        named.sort_by(|a, b| a.1.cmp(b.1));
        for (node, name) in named {
            let is_dir = matches!(node, Node::Dir(_));
            let identifier =
                if joliet { joliet_identifier(name) } else { primary_identifier(name, is_dir, &mut taken) };
            if let Node::Dir(d) = node {
                dir_identifier[d] = identifier.clone();
            }
            entries.push((node, identifier));
        }
        entries.sort_by(|a, b| a.1.cmp(&b.1));
        children.push(entries);
    }
    let mut order = vec![0];
    let mut queue = VecDeque::from([0usize]);
    while let Some(dir) = queue.pop_front() {
        for (node, _) in &children[dir] {
            if let Node::Dir(sub) = node {
                order.push(*sub);
                queue.push_back(*sub);
            }
        }
    }
    if order.len() > usize::from(u16::MAX) {
        return Err(MediaError::TooLarge { reason: format!("{} directories, path tables hold 65535", order.len()) });
    }
    let mut dir_size = vec![0u32; dir_count];
    for (dir, entries) in children.iter().enumerate() {
        let mut used: u64 = 0;
        let mut place = |len: u64| {
            if used % SECTOR_SIZE + len > SECTOR_SIZE {
                used += SECTOR_SIZE - used % SECTOR_SIZE;
            }
            used += len;
        };
        place(34);
        place(34);
        for (node, identifier) in entries {
            let record_len = record_len(identifier.len());
            let count = match node {
                Node::Dir(_) => 1,
                Node::File(f) => builder.files[*f].len.div_ceil(builder.max_extent).max(1),
            };
            for _ in 0..count {
                place(record_len);
            }
        }
        dir_size[dir] = u32::try_from(used.div_ceil(SECTOR_SIZE) * SECTOR_SIZE)
            .map_err(|_| MediaError::TooLarge { reason: "a directory exceeds 4 GiB".to_owned() })?;
    }
    Ok(Tree {
        joliet,
        children,
        order,
        dir_lba: vec![0; dir_count],
        dir_size,
        dir_identifier,
        dir_parent: builder.dirs.iter().map(|dir| dir.parent).collect(),
        path_table_size: 0,
        path_table_lba: [0; 2],
    })
}

fn record_len(identifier_len: usize) -> u64 {
    let len = 33 + identifier_len as u64;
    len + len % 2
}

fn joliet_identifier(name: &str) -> Vec<u8> {
    name.encode_utf16().flat_map(u16::to_be_bytes).collect()
}

/// An ISO 9660 level 2 identifier: upper-case d-characters, `NAME.EXT;1` for files, unique within its directory.
fn primary_identifier(name: &str, is_dir: bool, taken: &mut HashSet<String>) -> Vec<u8> {
    let map = |part: &str| -> String {
        part.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect()
    };
    let (base, extension) = match name.rfind('.') {
        Some(dot) if !is_dir && dot > 0 => (map(&name[..dot]), map(&name[dot + 1..])),
        _ => (map(name), String::new()),
    };
    let extension: String = extension.chars().take(8).collect();
    let room = MAX_PRIMARY_NAME - if is_dir { 0 } else { extension.len() + 1 };
    let mut base: String = base.chars().take(room).collect();
    let compose = |base: &str| if is_dir { base.to_owned() } else { format!("{base}.{extension}") };
    // Readers drop the dot of `NAME.;1`, so `NAME.` must not collide with a folder `NAME` either.
    let reads_as = |base: &str| compose(base).trim_end_matches('.').to_owned();
    let mut counter = 0u32;
    while taken.contains(&reads_as(&base)) {
        counter += 1;
        let suffix = format!("~{counter}");
        let keep = room.saturating_sub(suffix.len());
        base = format!("{}{suffix}", base.chars().take(keep).collect::<String>());
    }
    let composed = compose(&base);
    taken.insert(reads_as(&base));
    if is_dir { composed.into_bytes() } else { format!("{composed};1").into_bytes() }
}

fn directory_record(identifier: &[u8], lba: u32, len: u32, flags: u8, date: &[u8; 7]) -> Vec<u8> {
    let record_len = record_len(identifier.len()) as usize;
    let mut record = vec![0u8; record_len];
    record[0] = record_len as u8;
    record[2..10].copy_from_slice(&both_u32(lba));
    record[10..18].copy_from_slice(&both_u32(len));
    record[18..25].copy_from_slice(date);
    record[25] = flags;
    record[28..32].copy_from_slice(&both_u16(1));
    record[32] = identifier.len() as u8;
    record[33..33 + identifier.len()].copy_from_slice(identifier);
    record
}

fn split_path(path: &str) -> Result<Vec<&str>, MediaError> {
    let components: Vec<&str> = path.split('/').filter(|part| !part.is_empty()).collect();
    for part in &components {
        let reason = if *part == "." || *part == ".." {
            Some("`.` and `..` are not names")
        } else if part.encode_utf16().count() > MAX_NAME_UNITS {
            Some("a name is at most 64 characters (joliet)")
        } else if part.chars().any(|c| (c as u32) > 0xFFFF) {
            Some("joliet names are ucs-2: no characters outside the basic multilingual plane")
        } else if part.chars().any(|c| c.is_control() || "*:;?\\".contains(c)) {
            Some("joliet forbids control characters and * : ; ? \\")
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(invalid(path, reason));
        }
    }
    Ok(components)
}

fn invalid(path: &str, reason: &str) -> MediaError {
    MediaError::InvalidPath { path: path.to_owned(), reason: reason.to_owned() }
}

fn ascii_field(value: &str) -> String {
    value.chars().filter(|c| (' '..='~').contains(c)).take(128).collect()
}

fn ascii_padded(value: &str, len: usize) -> Vec<u8> {
    let mut field: Vec<u8> = value.bytes().take(len).collect();
    field.resize(len, b' ');
    field
}

fn ucs2_field(value: &str, len: usize) -> Vec<u8> {
    let mut field: Vec<u8> = value.encode_utf16().take(len / 2).flat_map(u16::to_be_bytes).collect();
    while field.len() < len {
        field.extend_from_slice(&[0x00, 0x20]);
    }
    field
}

fn both_u32(value: u32) -> [u8; 8] {
    let mut bytes = [0u8; 8];
    bytes[..4].copy_from_slice(&value.to_le_bytes());
    bytes[4..].copy_from_slice(&value.to_be_bytes());
    bytes
}

fn both_u16(value: u16) -> [u8; 4] {
    let mut bytes = [0u8; 4];
    bytes[..2].copy_from_slice(&value.to_le_bytes());
    bytes[2..].copy_from_slice(&value.to_be_bytes());
    bytes
}

fn unset_descriptor_date() -> [u8; 17] {
    let mut date = [b'0'; 17];
    date[16] = 0;
    date
}

fn padding_to_sector(len: u64) -> u64 {
    (SECTOR_SIZE - len % SECTOR_SIZE) % SECTOR_SIZE
}

fn pad_to_sector(bytes: &mut Vec<u8>) {
    let padding = padding_to_sector(bytes.len() as u64) as usize;
    bytes.resize(bytes.len() + padding, 0);
}

// ---------------------------------------------------------------------------------------------
// Reader
// ---------------------------------------------------------------------------------------------

/// An El Torito boot entry as read from a volume's boot catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootInfo {
    /// The platform id of the entry's section (0x00 BIOS, 0xEF UEFI, ...).
    pub platform_id: u8,
    pub bootable: bool,
    /// Boot media type: 0 is no emulation.
    pub media_type: u8,
    pub load_sectors: u16,
    pub load_lba: u32,
    /// The file whose data starts at `load_lba`, when there is one.
    pub image: Option<String>,
}

impl BootInfo {
    pub fn platform(&self) -> Option<BootPlatform> {
        BootPlatform::from_id(self.platform_id)
    }
}

enum Source {
    Bytes(Vec<u8>),
    File { path: PathBuf, file: Mutex<File> },
}

#[derive(Debug, Clone)]
struct Extent {
    offset: u64,
    len: u64,
}

#[derive(Debug)]
enum EntryKind {
    Dir,
    File { extents: Vec<Extent> },
}

#[derive(Debug)]
struct VolumeEntry {
    /// The path as the volume spells it, with a leading `/`.
    path: String,
    kind: EntryKind,
}

/// A parsed ISO 9660 volume over a file or bytes; file data is read on demand.
pub struct IsoImage {
    source: Source,
    len: u64,
    volume_id: String,
    joliet: bool,
    entries: BTreeMap<String, VolumeEntry>,
    files: Vec<String>,
    boot: Vec<BootInfo>,
}

impl std::fmt::Debug for IsoImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IsoImage")
            .field("volume_id", &self.volume_id)
            .field("len", &self.len)
            .field("joliet", &self.joliet)
            .field("files", &self.files.len())
            .finish()
    }
}

fn malformed(offset: u64, reason: impl Into<String>) -> MediaError {
    MediaError::MalformedIso { offset, reason: reason.into() }
}

impl IsoImage {
    /// Opens and parses an image file; file data stays on disk until read.
    pub fn open(path: &Path) -> Result<Self, MediaError> {
        let io_error = |source| MediaError::Io { path: path.to_path_buf(), source };
        let file = File::open(path).map_err(io_error)?;
        let len = file.metadata().map_err(io_error)?.len();
        Self::parse(Source::File { path: path.to_path_buf(), file: Mutex::new(file) }, len)
    }

    /// Parses an image held in memory.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, MediaError> {
        let len = bytes.len() as u64;
        Self::parse(Source::Bytes(bytes), len)
    }

    pub fn volume_id(&self) -> &str {
        &self.volume_id
    }

    /// Whether names come from a Joliet supplementary descriptor.
    pub fn is_joliet(&self) -> bool {
        self.joliet
    }

    /// The El Torito boot entries, default entry first; empty for a volume that does not boot.
    pub fn boot_entries(&self) -> &[BootInfo] {
        &self.boot
    }

    /// Every file path (leading `/`), sorted.
    pub fn file_paths(&self) -> &[String] {
        &self.files
    }

    /// Every directory path (leading `/`, the root is `/`), sorted.
    pub fn dir_paths(&self) -> Vec<String> {
        self.entries.values().filter(|entry| matches!(entry.kind, EntryKind::Dir)).map(|e| e.path.clone()).collect()
    }

    /// A file's size, matched case-insensitively; `None` when there is no such file.
    pub fn file_size(&self, path: &str) -> Option<u64> {
        match &self.entries.get(&lookup_key(path))?.kind {
            EntryKind::File { extents } => Some(extents.iter().map(|extent| extent.len).sum()),
            EntryKind::Dir => None,
        }
    }

    /// A file's content, matched case-insensitively; `Ok(None)` when there is no such file.
    pub fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>, MediaError> {
        let Some(VolumeEntry { kind: EntryKind::File { extents }, .. }) = self.entries.get(&lookup_key(path)) else {
            return Ok(None);
        };
        let mut content = Vec::with_capacity(extents.iter().map(|e| e.len).sum::<u64>() as usize);
        for extent in extents {
            content.extend_from_slice(&self.read_at(extent.offset, extent.len)?);
        }
        Ok(Some(content))
    }

    /// Reads bytes that parsing has already checked to lie inside the image.
    fn read_at(&self, offset: u64, len: u64) -> Result<Vec<u8>, MediaError> {
        let end = offset.checked_add(len).filter(|&end| end <= self.len);
        if end.is_none() {
            return Err(malformed(offset, format!("{len} bytes here run past the end of the {}-byte image", self.len)));
        }
        match &self.source {
            Source::Bytes(bytes) => Ok(bytes[offset as usize..(offset + len) as usize].to_vec()),
            Source::File { path, file } => {
                let mut file = file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                let mut buffer = vec![0u8; len as usize];
                file.seek(SeekFrom::Start(offset))
                    .and_then(|_| file.read_exact(&mut buffer))
                    .map_err(|source| MediaError::Read { offset, source })
                    .map_err(|error| match error {
                        MediaError::Read { source, .. } if source.kind() != io::ErrorKind::UnexpectedEof => {
                            MediaError::Io { path: path.clone(), source }
                        }
                        other => other,
                    })?;
                Ok(buffer)
            }
        }
    }

    fn parse(source: Source, len: u64) -> Result<Self, MediaError> {
        let mut image = IsoImage {
            source,
            len,
            volume_id: String::new(),
            joliet: false,
            entries: BTreeMap::new(),
            files: Vec::new(),
            boot: Vec::new(),
        };
        if len < 17 * SECTOR_SIZE {
            return Err(malformed(len, format!("image is {len} bytes, shorter than 17 sectors of 2048 bytes")));
        }
        let mut primary = None;
        let mut joliet = None;
        let mut catalog_lba = None;
        let mut sector_index = 16u64;
        loop {
            let offset = sector_index * SECTOR_SIZE;
            if offset + SECTOR_SIZE > len {
                return Err(malformed(offset, "volume descriptor set ends without a terminator"));
            }
            if sector_index > 16 + 64 {
                return Err(malformed(offset, "more than 64 volume descriptors without a terminator"));
            }
            let descriptor = image.read_at(offset, SECTOR_SIZE)?;
            if &descriptor[1..6] != b"CD001" {
                return Err(malformed(offset + 1, "volume descriptor without the CD001 identifier"));
            }
            match descriptor[0] {
                255 => break,
                1 if primary.is_none() => primary = Some((offset, descriptor)),
                2 if joliet.is_none() && JOLIET_ESCAPES.iter().any(|escape| &descriptor[88..91] == *escape) => {
                    joliet = Some((offset, descriptor))
                }
                0 if descriptor[7..7 + EL_TORITO_ID.len()] == *EL_TORITO_ID => {
                    catalog_lba = Some((offset + 0x47, read_le_u32(&descriptor, 0x47)))
                }
                _ => {}
            }
            sector_index += 1;
        }
        let Some((primary_offset, primary)) = primary else {
            return Err(malformed(16 * SECTOR_SIZE, "no primary volume descriptor"));
        };
        let block_size = u16::from_le_bytes([primary[128], primary[129]]);
        if u64::from(block_size) != SECTOR_SIZE {
            return Err(malformed(
                primary_offset + 128,
                format!("logical block size {block_size}, only 2048 is supported"),
            ));
        }
        image.volume_id = String::from_utf8_lossy(&primary[40..72]).trim_end_matches([' ', '\0']).to_owned();
        image.joliet = joliet.is_some();
        let (tree_offset, tree_descriptor) = joliet.unwrap_or((primary_offset, primary));
        image.read_tree(tree_offset + 156, &tree_descriptor[156..190], image.joliet)?;
        if let Some((offset, lba)) = catalog_lba {
            image.boot = image.read_boot_catalog(offset, lba)?;
        }
        Ok(image)
    }

    fn read_tree(&mut self, root_offset: u64, root_record: &[u8], joliet: bool) -> Result<(), MediaError> {
        let root = self.parse_record(root_offset, root_record)?;
        if root.flags & FLAG_DIRECTORY == 0 {
            return Err(malformed(root_offset + 25, "root directory record is not a directory"));
        }
        self.entries.insert("/".to_owned(), VolumeEntry { path: "/".to_owned(), kind: EntryKind::Dir });
        // Directory bytes read in total are bounded, so overlapping extents cannot make parsing quadratic.
        let mut budget = self.len.saturating_mul(4).max(1 << 20);
        let mut visited = HashSet::new();
        let mut queue = VecDeque::from([(String::new(), root.extent)]);
        while let Some((dir_path, extent)) = queue.pop_front() {
            if !visited.insert(extent.offset) {
                return Err(malformed(extent.offset, "directory extent is reachable twice (a directory loop)"));
            }
            budget = budget
                .checked_sub(extent.len)
                .ok_or_else(|| malformed(extent.offset, "directory tree is larger than the image could hold"))?;
            let data = self.read_at(extent.offset, extent.len)?;
            let mut pending: Option<(String, Vec<Extent>)> = None;
            let mut position = 0usize;
            while position < data.len() {
                let record_offset = extent.offset + position as u64;
                let record_len = usize::from(data[position]);
                if record_len == 0 {
                    position = (position / SECTOR + 1) * SECTOR;
                    continue;
                }
                if position + record_len > data.len() {
                    return Err(malformed(record_offset, "directory record runs past the end of its directory"));
                }
                let record = self.parse_record(record_offset, &data[position..position + record_len])?;
                position += record_len;
                if record.identifier == [0] || record.identifier == [1] {
                    continue;
                }
                let name = decode_name(&record.identifier, joliet, record.flags & FLAG_DIRECTORY != 0)
                    .map_err(|reason| malformed(record_offset + 33, reason))?;
                let path = format!("{dir_path}/{name}");
                if record.flags & FLAG_DIRECTORY != 0 {
                    if pending.is_some() {
                        return Err(malformed(record_offset, "multi-extent file is not followed by its last extent"));
                    }
                    if self.add_entry(&path, EntryKind::Dir) {
                        queue.push_back((path, record.extent));
                    }
                    continue;
                }
                let mut extents = match pending.take() {
                    Some((pending_path, extents)) if pending_path == path => extents,
                    Some(_) => {
                        return Err(malformed(record_offset, "multi-extent file is not followed by its last extent"));
                    }
                    None => Vec::new(),
                };
                extents.push(record.extent);
                if record.flags & FLAG_MULTI_EXTENT != 0 {
                    pending = Some((path, extents));
                } else {
                    self.add_entry(&path, EntryKind::File { extents });
                }
            }
            if pending.is_some() {
                return Err(malformed(extent.offset, "directory ends inside a multi-extent file"));
            }
        }
        self.files = self
            .entries
            .values()
            .filter(|entry| matches!(entry.kind, EntryKind::File { .. }))
            .map(|entry| entry.path.clone())
            .collect();
        self.files.sort();
        Ok(())
    }

    /// Adds an entry unless a case-insensitively equal one exists (the first one wins, as on Windows).
    fn add_entry(&mut self, path: &str, kind: EntryKind) -> bool {
        let key = lookup_key(path);
        if self.entries.contains_key(&key) {
            return false;
        }
        self.entries.insert(key, VolumeEntry { path: path.to_owned(), kind });
        true
    }

    fn parse_record(&self, offset: u64, record: &[u8]) -> Result<DirectoryRecord, MediaError> {
        if record.len() < 34 || usize::from(record[0]) < 34 {
            return Err(malformed(offset, "directory record shorter than 34 bytes"));
        }
        let identifier_len = usize::from(record[32]);
        if identifier_len == 0 || 33 + identifier_len > record.len().min(usize::from(record[0])) {
            return Err(malformed(offset + 32, "directory record identifier does not fit its record"));
        }
        let lba = read_le_u32(record, 2);
        let data_len = u64::from(read_le_u32(record, 10));
        let start = u64::from(lba) * SECTOR_SIZE;
        if start.checked_add(data_len).is_none_or(|end| end > self.len) {
            return Err(malformed(
                offset + 2,
                format!("extent at sector {lba} of {data_len} bytes lies outside the {}-byte image", self.len),
            ));
        }
        Ok(DirectoryRecord {
            extent: Extent { offset: start, len: data_len },
            flags: record[25],
            identifier: record[33..33 + identifier_len].to_vec(),
        })
    }

    fn read_boot_catalog(&self, pointer_offset: u64, lba: u32) -> Result<Vec<BootInfo>, MediaError> {
        let offset = u64::from(lba) * SECTOR_SIZE;
        if offset + SECTOR_SIZE > self.len {
            return Err(malformed(pointer_offset, format!("boot catalog sector {lba} lies outside the image")));
        }
        let catalog = self.read_at(offset, SECTOR_SIZE)?;
        if catalog[0] != 1 || catalog[30] != 0x55 || catalog[31] != 0xAA {
            return Err(malformed(offset, "boot catalog has no validation entry"));
        }
        let sum = catalog[..32].chunks(2).fold(0u16, |sum, w| sum.wrapping_add(u16::from_le_bytes([w[0], w[1]])));
        if sum != 0 {
            return Err(malformed(offset + 28, "boot catalog validation entry checksum does not add up to zero"));
        }
        let mut entries = vec![self.boot_info(catalog[1], &catalog[32..64])];
        let mut position = 64;
        while position + 32 <= SECTOR {
            let header = &catalog[position..position + 32];
            if header[0] != 0x90 && header[0] != 0x91 {
                break;
            }
            let platform = header[1];
            let count = usize::from(u16::from_le_bytes([header[2], header[3]]));
            position += 32;
            let mut read = 0;
            while read < count && position + 32 <= SECTOR {
                let entry = &catalog[position..position + 32];
                position += 32;
                if entry[0] == 0x44 {
                    continue; // extension entry of the previous one
                }
                entries.push(self.boot_info(platform, entry));
                read += 1;
            }
            if header[0] == 0x91 {
                break;
            }
        }
        Ok(entries)
    }

    fn boot_info(&self, platform_id: u8, entry: &[u8]) -> BootInfo {
        let load_lba = read_le_u32(entry, 8);
        let load_offset = u64::from(load_lba) * SECTOR_SIZE;
        let image = self.entries.values().find_map(|candidate| match &candidate.kind {
            EntryKind::File { extents } if extents.first().is_some_and(|e| e.offset == load_offset && e.len > 0) => {
                Some(candidate.path.clone())
            }
            _ => None,
        });
        BootInfo {
            platform_id,
            bootable: entry[0] == 0x88,
            media_type: entry[1] & 0x0F,
            load_sectors: u16::from_le_bytes([entry[6], entry[7]]),
            load_lba,
            image,
        }
    }
}

struct DirectoryRecord {
    extent: Extent,
    flags: u8,
    identifier: Vec<u8>,
}

fn read_le_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// A record's name as a path component: Joliet UCS-2 or primary bytes, without `;version` or a bare trailing dot.
fn decode_name(identifier: &[u8], joliet: bool, is_dir: bool) -> Result<String, String> {
    let mut name = if joliet {
        if !identifier.len().is_multiple_of(2) {
            return Err("joliet name has an odd number of bytes".to_owned());
        }
        let units = identifier.chunks(2).map(|pair| u16::from_be_bytes([pair[0], pair[1]]));
        char::decode_utf16(units).map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER)).collect::<String>()
    } else {
        identifier.iter().map(|&b| char::from(b)).collect::<String>()
    };
    if !is_dir {
        if let Some(semicolon) = name.rfind(';')
            && name[semicolon + 1..].bytes().all(|b| b.is_ascii_digit())
        {
            name.truncate(semicolon);
        }
        if !joliet && name.ends_with('.') {
            name.pop();
        }
    }
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err(format!("unusable file name {name:?}"));
    }
    Ok(name)
}

impl Medium for IsoImage {
    fn volume_id(&self) -> &str {
        &self.volume_id
    }

    fn exists(&self, path: &str) -> bool {
        self.entries.contains_key(&lookup_key(path))
    }

    fn read(&self, path: &str) -> Option<Vec<u8>> {
        self.read_file(path).ok().flatten()
    }

    fn files(&self) -> Vec<String> {
        self.files.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primary_identifiers_are_upper_case_unique_and_versioned() {
        let mut taken = HashSet::new();
        let mut check = |name: &str, is_dir: bool, expected: &str| {
            assert_eq!(String::from_utf8(primary_identifier(name, is_dir, &mut taken)).unwrap(), expected, "{name}");
        };
        check("readme.txt", false, "README.TXT;1");
        check("README.TXT", false, "README~1.TXT;1");
        check("boot", true, "BOOT");
        check("boot", false, "BOOT~1.;1");
        check("grüße-v1.tar.gz", false, "GR__E_V1_TAR.GZ;1");
        check(".hidden", false, "_HIDDEN.;1");
        check(&"x".repeat(40), true, &"X".repeat(30));
    }

    #[test]
    fn large_files_split_into_consecutive_extents() {
        assert_eq!(file_extents(100, 0, 4096), vec![(100, 0, true)]);
        assert_eq!(file_extents(100, 4096, 4096), vec![(100, 4096, true)]);
        assert_eq!(file_extents(100, 5000, 4096), vec![(100, 4096, false), (102, 904, true)]);
        let four_gib = 4 * 1024 * 1024 * 1024u64;
        assert_eq!(file_extents(7, four_gib, MAX_EXTENT), vec![(7, 0xFFFF_F800, false), (7 + 0x1F_FFFF, 2048, true)]);
    }

    #[test]
    fn names_decode_without_versions_and_bare_dots() {
        assert_eq!(decode_name(b"README.TXT;1", false, false).unwrap(), "README.TXT");
        assert_eq!(decode_name(b"EMPTY.;1", false, false).unwrap(), "EMPTY");
        assert_eq!(decode_name(b"DIR.X", false, true).unwrap(), "DIR.X");
        assert_eq!(decode_name(&joliet_identifier("Grüße;1"), true, false).unwrap(), "Grüße");
        assert!(decode_name(&[0, b'a', 0], true, false).is_err());
        assert!(decode_name(b"a/b", false, false).is_err());
    }
}

//! FAT12 floppy images (1.44 MB and 2.88 MB) written in process with `fatfs`, and a bounded reader for any small FAT image.

use std::collections::{BTreeMap, HashMap};
use std::io::{Cursor, Read, Write};
use std::path::Path;
use std::sync::{Mutex, OnceLock};

use fatfs::{FatType, FileSystem, FormatVolumeOptions, FsOptions, TimeProvider};
use jiff::civil::DateTime;

use super::{MediaError, lookup_key};
use crate::guest::Medium;

/// The largest FAT image the reader accepts: floppies and small driver disks, never a whole disk.
pub const MAX_FAT_IMAGE: u64 = 64 * 1024 * 1024;
const MAX_DEPTH: usize = 32;

/// Standard PC floppy formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FloppySize {
    /// 3.5" HD: 2880 sectors, 18 per track, 224 root entries, 1 sector per cluster.
    Floppy1440K,
    /// 3.5" ED: 5760 sectors, 36 per track, 240 root entries, 2 sectors per cluster (the virtio-win `.vfd`).
    Floppy2880K,
}

impl FloppySize {
    pub fn bytes(self) -> u64 {
        u64::from(self.geometry().total_sectors) * 512
    }

    fn geometry(self) -> Geometry {
        match self {
            FloppySize::Floppy1440K => {
                Geometry { total_sectors: 2880, sectors_per_track: 18, root_entries: 224, cluster_bytes: 512 }
            }
            FloppySize::Floppy2880K => {
                Geometry { total_sectors: 5760, sectors_per_track: 36, root_entries: 240, cluster_bytes: 1024 }
            }
        }
    }
}

struct Geometry {
    total_sectors: u32,
    sectors_per_track: u16,
    root_entries: u16,
    cluster_bytes: u32,
}

/// Builds a FAT12 floppy image with a volume label.
pub struct FloppyBuilder {
    size: FloppySize,
    label: [u8; 11],
    created: DateTime,
    dirs: Vec<String>,
    files: BTreeMap<String, (String, Vec<u8>)>,
}

impl FloppyBuilder {
    /// A floppy labelled `label` (at most 11 characters, upper-cased like DOS does) whose timestamps are all `created`.
    pub fn new(size: FloppySize, label: &str, created: DateTime) -> Result<Self, MediaError> {
        let upper = label.to_ascii_uppercase();
        if upper.len() > 11
            || !upper.bytes().all(|b| b.is_ascii_graphic() && !b"\"*+,./:;<=>?[\\]|".contains(&b) || b == b' ')
        {
            return Err(MediaError::InvalidPath {
                path: label.to_owned(),
                reason: "a fat volume label is at most 11 ascii characters without \"*+,./:;<=>?[\\]|".to_owned(),
            });
        }
        let mut padded = [b' '; 11];
        padded[..upper.len()].copy_from_slice(upper.as_bytes());
        Ok(FloppyBuilder { size, label: padded, created, dirs: Vec::new(), files: BTreeMap::new() })
    }

    /// Adds a directory (and its parents).
    pub fn add_dir(&mut self, path: &str) -> Result<(), MediaError> {
        let components = fat_components(path)?;
        self.dirs.push(components.join("/"));
        Ok(())
    }

    /// Adds a file (creating its parent directories).
    pub fn add_file(&mut self, path: &str, content: impl Into<Vec<u8>>) -> Result<(), MediaError> {
        let components = fat_components(path)?;
        if components.is_empty() {
            return Err(MediaError::InvalidPath { path: path.to_owned(), reason: "a file needs a name".to_owned() });
        }
        let joined = components.join("/");
        if self.files.insert(lookup_key(&joined), (joined, content.into())).is_some() {
            return Err(MediaError::DuplicatePath { path: path.to_owned() });
        }
        Ok(())
    }

    /// Formats the image, writes every file and streams the result; returns the number of bytes written.
    pub fn write(self, out: &mut impl Write) -> Result<u64, MediaError> {
        let image = self.build()?;
        out.write_all(&image).map_err(MediaError::Write)?;
        Ok(image.len() as u64)
    }

    fn build(self) -> Result<Vec<u8>, MediaError> {
        let geometry = self.size.geometry();
        let mut image = Cursor::new(vec![0u8; self.size.bytes() as usize]);
        let volume_serial = self.label.iter().fold(0x1234_5678u32, |hash, &b| hash.rotate_left(5) ^ u32::from(b));
        let options = FormatVolumeOptions::new()
            .fat_type(FatType::Fat12)
            .bytes_per_sector(512)
            .total_sectors(geometry.total_sectors)
            .bytes_per_cluster(geometry.cluster_bytes)
            .max_root_dir_entries(geometry.root_entries)
            .fats(2)
            .media(0xF0)
            .sectors_per_track(geometry.sectors_per_track)
            .heads(2)
            .drive_num(0)
            .volume_id(volume_serial)
            .volume_label(self.label);
        let too_large = |error: std::io::Error| MediaError::TooLarge { reason: format!("{:?}: {error}", self.size) };
        fatfs::format_volume(&mut image, options).map_err(too_large)?;
        image.set_position(0);
        {
            let options = FsOptions::new().time_provider(fixed_time(self.created)).update_accessed_date(false);
            let fs = FileSystem::new(&mut image, options).map_err(too_large)?;
            let root = fs.root_dir();
            let mut dirs: Vec<&String> = self.dirs.iter().chain(self.files.values().map(|(path, _)| path)).collect();
            dirs.sort();
            for path in dirs {
                let mut prefix = String::new();
                let components: Vec<&str> = path.split('/').collect();
                let is_file = self.files.contains_key(&lookup_key(path));
                let dir_count = components.len() - usize::from(is_file);
                for component in &components[..dir_count] {
                    if !prefix.is_empty() {
                        prefix.push('/');
                    }
                    prefix.push_str(component);
                    if root.open_dir(&prefix).is_err() {
                        root.create_dir(&prefix).map_err(too_large)?;
                    }
                }
            }
            for (path, content) in self.files.values() {
                let mut file = root.create_file(path).map_err(too_large)?;
                file.write_all(content).map_err(too_large)?;
                file.flush().map_err(too_large)?;
            }
            drop(root);
            fs.unmount().map_err(too_large)?;
        }
        Ok(image.into_inner())
    }
}

fn fat_components(path: &str) -> Result<Vec<&str>, MediaError> {
    let components: Vec<&str> = path.split('/').filter(|part| !part.is_empty()).collect();
    for part in &components {
        if *part == "."
            || *part == ".."
            || part.len() > 255
            || part.chars().any(|c| c.is_control() || "\"*:<>?\\|".contains(c))
        {
            return Err(MediaError::InvalidPath {
                path: path.to_owned(),
                reason: "fat names are at most 255 characters without control characters or \"*:<>?\\|".to_owned(),
            });
        }
    }
    Ok(components)
}

fn fat_time(time: DateTime) -> fatfs::DateTime {
    fatfs::DateTime {
        date: fatfs::Date {
            year: time.year().clamp(1980, 2107) as u16,
            month: time.month() as u16,
            day: time.day() as u16,
        },
        time: fatfs::Time { hour: time.hour() as u16, min: time.minute() as u16, sec: time.second() as u16, millis: 0 },
    }
}

#[derive(Debug)]
struct FixedTime(fatfs::DateTime);

impl TimeProvider for FixedTime {
    fn get_current_date(&self) -> fatfs::Date {
        self.0.date
    }

    fn get_current_date_time(&self) -> fatfs::DateTime {
        self.0
    }
}

/// `fatfs` wants a `'static` time provider: keep one per distinct timestamp (a handful in practice).
fn fixed_time(time: DateTime) -> &'static FixedTime {
    static PROVIDERS: OnceLock<Mutex<HashMap<DateTime, &'static FixedTime>>> = OnceLock::new();
    let mut providers = PROVIDERS.get_or_init(Default::default).lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    providers.entry(time).or_insert_with(|| Box::leak(Box::new(FixedTime(fat_time(time)))))
}

/// A FAT image read fully into memory (it is at most [`MAX_FAT_IMAGE`] bytes).
#[derive(Debug)]
pub struct FloppyImage {
    label: String,
    files: BTreeMap<String, (String, Vec<u8>)>,
    dirs: BTreeMap<String, String>,
}

fn malformed_fat(reason: impl Into<String>) -> MediaError {
    MediaError::MalformedFat { reason: reason.into() }
}

impl FloppyImage {
    pub fn open(path: &Path) -> Result<Self, MediaError> {
        let io_error = |source| MediaError::Io { path: path.to_path_buf(), source };
        let file = std::fs::File::open(path).map_err(io_error)?;
        let len = file.metadata().map_err(io_error)?.len();
        if len > MAX_FAT_IMAGE {
            return Err(malformed_fat(format!("{len} bytes is larger than the {MAX_FAT_IMAGE}-byte limit")));
        }
        let mut bytes = Vec::with_capacity(len as usize);
        file.take(MAX_FAT_IMAGE).read_to_end(&mut bytes).map_err(io_error)?;
        Self::from_bytes(bytes)
    }

    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, MediaError> {
        let len = bytes.len() as u64;
        if len > MAX_FAT_IMAGE {
            return Err(malformed_fat(format!("{len} bytes is larger than the {MAX_FAT_IMAGE}-byte limit")));
        }
        let Some(boot_sector) = bytes.first_chunk::<512>() else {
            return Err(malformed_fat(format!("{len} bytes is shorter than a boot sector")));
        };
        if !crate::sniff::is_fat_boot_sector(boot_sector) {
            return Err(malformed_fat("the first sector is not a fat boot sector"));
        }
        // fatfs 0.3 does unchecked arithmetic on cluster numbers read from the image (a cluster 1 in a
        // directory entry or FAT chain underflows `cluster - 2`), so a corrupt image can panic inside
        // it. A corrupt medium must be an error for the caller, never a crash of the simulated host.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Self::parse(bytes, len))).unwrap_or_else(|panic| {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(malformed_fat(format!("inconsistent fat structures ({message})")))
        })
    }

    fn parse(bytes: Vec<u8>, len: u64) -> Result<Self, MediaError> {
        let fs = FileSystem::new(Cursor::new(bytes), FsOptions::new().update_accessed_date(false))
            .map_err(|error| malformed_fat(format!("boot sector: {error}")))?;
        let label = match fs.read_volume_label_from_root_dir() {
            Ok(Some(label)) => label,
            _ => fs.volume_label(),
        }
        .trim_end()
        .to_owned();
        let mut image = FloppyImage { label, files: BTreeMap::new(), dirs: BTreeMap::new() };
        image.dirs.insert("/".to_owned(), "/".to_owned());
        // A corrupt FAT can chain a directory into a loop: bound entries and bytes by the image size.
        let mut entries_left = len / 32 + 16;
        let mut bytes_left = len;
        let mut stack = vec![(String::new(), fs.root_dir(), 0usize)];
        while let Some((dir_path, dir, depth)) = stack.pop() {
            for entry in dir.iter() {
                let entry = entry.map_err(|error| malformed_fat(format!("directory {dir_path}/: {error}")))?;
                entries_left = entries_left.checked_sub(1).ok_or_else(|| {
                    malformed_fat(format!("directory {dir_path}/ has more entries than fit the image"))
                })?;
                let name = entry.file_name();
                if name == "." || name == ".." || name.is_empty() || name.contains('/') {
                    continue;
                }
                let path = format!("{dir_path}/{name}");
                let key = lookup_key(&path);
                if entry.is_dir() {
                    if depth + 1 > MAX_DEPTH {
                        return Err(malformed_fat(format!("{path}: directories nest deeper than {MAX_DEPTH}")));
                    }
                    if let std::collections::btree_map::Entry::Vacant(vacant) = image.dirs.entry(key) {
                        vacant.insert(path.clone());
                        stack.push((path, entry.to_dir(), depth + 1));
                    }
                } else if entry.is_file() && !image.files.contains_key(&key) {
                    let size = entry.len();
                    bytes_left = bytes_left
                        .checked_sub(size)
                        .ok_or_else(|| malformed_fat(format!("{path}: {size} bytes do not fit the image")))?;
                    let mut content = Vec::with_capacity(size as usize);
                    entry
                        .to_file()
                        .take(size)
                        .read_to_end(&mut content)
                        .map_err(|error| malformed_fat(format!("{path}: {error}")))?;
                    image.files.insert(key, (path, content));
                }
            }
        }
        Ok(image)
    }

    pub fn label(&self) -> &str {
        &self.label
    }
}

impl Medium for FloppyImage {
    fn volume_id(&self) -> &str {
        &self.label
    }

    fn exists(&self, path: &str) -> bool {
        let key = lookup_key(path);
        self.files.contains_key(&key) || self.dirs.contains_key(&key)
    }

    fn read(&self, path: &str) -> Option<Vec<u8>> {
        self.files.get(&lookup_key(path)).map(|(_, content)| content.clone())
    }

    fn files(&self) -> Vec<String> {
        let mut files: Vec<String> = self.files.values().map(|(path, _)| path.clone()).collect();
        files.sort();
        files
    }
}

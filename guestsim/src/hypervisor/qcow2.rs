//! A minimal qcow2 (version 3) writer and reader, so the simulated host needs no external tool at run time.
//!
//! The writer streams guest clusters in increasing order, stores only clusters that are not
//! all zero, and lays the file out as header, L1 table, data clusters, L2 tables, refcount
//! blocks and refcount table, with every refcount exactly 1 and the `COPIED` flags set, so that
//! `qemu-img check` finds nothing to report. Clusters are 64 KiB, refcounts 16 bits.
//!
//! The reader accepts qcow2 version 2 and 3 files with any cluster size qemu allows, and refuses
//! what it does not implement (encryption, backing files, compressed clusters, external data
//! files, extended L2 entries) with a clear error rather than wrong data. Every offset read
//! from the file is checked against the file's length before use, so arbitrary bytes yield an
//! error, never a panic or an allocation larger than the file.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::sniff::{self, QCOW2_MAGIC};

/// Cluster size the writer uses (qemu's default).
pub const CLUSTER_BITS: u32 = 16;
const CLUSTER_SIZE: u64 = 1 << CLUSTER_BITS;
const HEADER_V3_LEN: u32 = 104;
const REFCOUNT_ORDER: u32 = 4;
const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
const COPIED: u64 = 1 << 63;
const COMPRESSED: u64 = 1 << 62;
const ZERO_FLAG: u64 = 1;
/// qemu refuses L1 tables above 32 MiB; so do we, which also bounds what a hostile header can make us allocate.
const MAX_L1_BYTES: u64 = 32 << 20;
/// Largest virtual size qemu accepts (2^61 bytes would overflow its own arithmetic).
const MAX_VIRTUAL_SIZE: u64 = 1 << 56;

/// What can go wrong reading or writing a qcow2 image.
#[derive(Debug, thiserror::Error)]
pub enum Qcow2Error {
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// The data does not start with the qcow2 magic.
    #[error("not a qcow2 image (no QFI\\xfb magic)")]
    NotQcow2,
    #[error("unsupported qcow2 version {0} (expected 2 or 3)")]
    UnsupportedVersion(u32),
    #[error("invalid cluster_bits {0} (qcow2 allows 9 to 21)")]
    InvalidClusterBits(u32),
    #[error("encrypted qcow2 images are not supported (crypt_method {0})")]
    Encrypted(u32),
    #[error("qcow2 images with a backing file are not supported (backing file {0:?})")]
    BackingFile(String),
    #[error("compressed cluster at guest offset {0:#x} is not supported")]
    Compressed(u64),
    #[error("unsupported qcow2 feature: {0}")]
    UnsupportedFeature(String),
    /// A structural inconsistency: an offset beyond the file, a misaligned table, a truncated header.
    #[error("corrupt qcow2 image: {0}")]
    Corrupt(String),
    #[error("read of {len} bytes at {offset:#x} is outside the virtual size {size:#x}")]
    OutOfRange { offset: u64, len: u64, size: u64 },
    #[error("virtual size {0} is too large (qemu's limit is 2^56 bytes)")]
    TooLarge(u64),
    #[error("cluster {index} written after cluster {last}: clusters must be written in increasing order")]
    OutOfOrder { index: u64, last: u64 },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> Qcow2Error {
    let context = context.into();
    move |source| Qcow2Error::Io { context, source }
}

/// Streams a qcow2 image: clusters in increasing guest order, all-zero clusters left unallocated.
pub struct Qcow2Writer<W: Write + Seek> {
    out: W,
    virtual_size: u64,
    l1_entries: u64,
    l1_clusters: u64,
    /// L2 tables by L1 index; written after the data, so only their count must be known up front.
    l2_tables: BTreeMap<u64, Vec<u64>>,
    next_host_offset: u64,
    last_index: Option<u64>,
    data_clusters: u64,
}

/// What a finished write stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteStats {
    pub virtual_size: u64,
    /// Guest clusters holding data (the rest read as zeros).
    pub data_clusters: u64,
    /// Length of the qcow2 file.
    pub file_size: u64,
}

impl<W: Write + Seek> Qcow2Writer<W> {
    /// Starts an image of `virtual_size` bytes, rounded up to whole 512-byte sectors as qemu-img does. `out` must be
    /// empty (a new file): runs of zeros are left unwritten, as holes.
    pub fn new(out: W, virtual_size: u64) -> Result<Self, Qcow2Error> {
        if virtual_size > MAX_VIRTUAL_SIZE {
            return Err(Qcow2Error::TooLarge(virtual_size));
        }
        let virtual_size = virtual_size.div_ceil(512) * 512;
        let l2_entries = CLUSTER_SIZE / 8;
        let l1_entries = virtual_size.div_ceil(CLUSTER_SIZE * l2_entries).max(1);
        let l1_clusters = (l1_entries * 8).div_ceil(CLUSTER_SIZE);
        Ok(Qcow2Writer {
            out,
            virtual_size,
            l1_entries,
            l1_clusters,
            l2_tables: BTreeMap::new(),
            next_host_offset: (1 + l1_clusters) * CLUSTER_SIZE,
            last_index: None,
            data_clusters: 0,
        })
    }

    /// Writes guest cluster `index` (`data` up to one cluster; shorter data is zero-padded).
    pub fn write_cluster(&mut self, index: u64, data: &[u8]) -> Result<(), Qcow2Error> {
        if let Some(last) = self.last_index
            && index <= last
        {
            return Err(Qcow2Error::OutOfOrder { index, last });
        }
        let offset = index.saturating_mul(CLUSTER_SIZE);
        if offset >= self.virtual_size || data.len() as u64 > CLUSTER_SIZE {
            return Err(Qcow2Error::OutOfRange { offset, len: data.len() as u64, size: self.virtual_size });
        }
        self.last_index = Some(index);
        if data.iter().all(|&b| b == 0) {
            return Ok(());
        }
        let host = self.next_host_offset;
        self.out.seek(SeekFrom::Start(host)).map_err(io_err("cannot seek in qcow2 output"))?;
        // A short last cluster's zero padding is left as a hole: everything after it is written further on.
        self.out.write_all(data).map_err(io_err("cannot write qcow2 data cluster"))?;
        self.next_host_offset += CLUSTER_SIZE;
        self.data_clusters += 1;
        let l2_entries = CLUSTER_SIZE / 8;
        let table = self.l2_tables.entry(index / l2_entries).or_insert_with(|| vec![0; l2_entries as usize]);
        table[(index % l2_entries) as usize] = host | COPIED;
        Ok(())
    }

    /// Writes the metadata and returns the output with what was stored.
    pub fn finish(mut self) -> Result<(W, WriteStats), Qcow2Error> {
        let mut l1 = vec![0u64; self.l1_entries as usize];
        let tables = std::mem::take(&mut self.l2_tables);
        for (l1_index, table) in &tables {
            let host = self.next_host_offset;
            self.out.seek(SeekFrom::Start(host)).map_err(io_err("cannot seek in qcow2 output"))?;
            let bytes: Vec<u8> = table.iter().flat_map(|e| e.to_be_bytes()).collect();
            self.out.write_all(nonzero_prefix(&bytes)).map_err(io_err("cannot write qcow2 l2 table"))?;
            self.next_host_offset += CLUSTER_SIZE;
            l1[*l1_index as usize] = host | COPIED;
        }

        // Refcount blocks and table must cover every cluster, themselves included.
        let used = self.next_host_offset / CLUSTER_SIZE;
        let per_block = CLUSTER_SIZE * 8 / (1 << REFCOUNT_ORDER);
        let (mut blocks, mut table_clusters) = (1u64, 1u64);
        loop {
            let total = used + blocks + table_clusters;
            let need_blocks = total.div_ceil(per_block);
            let need_table = (need_blocks * 8).div_ceil(CLUSTER_SIZE);
            if need_blocks == blocks && need_table == table_clusters {
                break;
            }
            (blocks, table_clusters) = (need_blocks, need_table);
        }
        let total = used + blocks + table_clusters;
        let blocks_offset = self.next_host_offset;
        let table_offset = blocks_offset + blocks * CLUSTER_SIZE;
        let mut refcounts = vec![0u8; (blocks * CLUSTER_SIZE) as usize];
        for cluster in 0..total {
            let at = (cluster * 2) as usize;
            refcounts[at..at + 2].copy_from_slice(&1u16.to_be_bytes());
        }
        let mut table = vec![0u8; (table_clusters * CLUSTER_SIZE) as usize];
        for b in 0..blocks {
            let at = (b * 8) as usize;
            table[at..at + 8].copy_from_slice(&(blocks_offset + b * CLUSTER_SIZE).to_be_bytes());
        }
        self.out.seek(SeekFrom::Start(blocks_offset)).map_err(io_err("cannot seek in qcow2 output"))?;
        self.out.write_all(nonzero_prefix(&refcounts)).map_err(io_err("cannot write qcow2 refcount blocks"))?;
        self.out.seek(SeekFrom::Start(table_offset)).map_err(io_err("cannot seek in qcow2 output"))?;
        self.out.write_all(nonzero_prefix(&table)).map_err(io_err("cannot write qcow2 refcount table"))?;
        // The file ends with the refcount table, whose zero tail (like every zero run above) is a hole.
        let file_size = table_offset + table_clusters * CLUSTER_SIZE;
        self.out.seek(SeekFrom::Start(file_size - 1)).map_err(io_err("cannot seek in qcow2 output"))?;
        self.out.write_all(&[0]).map_err(io_err("cannot write qcow2 refcount table"))?;

        let mut header = vec![0u8; CLUSTER_SIZE as usize];
        let mut put = |at: usize, bytes: &[u8]| header[at..at + bytes.len()].copy_from_slice(bytes);
        put(0, &QCOW2_MAGIC);
        put(4, &3u32.to_be_bytes());
        put(20, &CLUSTER_BITS.to_be_bytes());
        put(24, &self.virtual_size.to_be_bytes());
        put(36, &(self.l1_entries as u32).to_be_bytes());
        put(40, &CLUSTER_SIZE.to_be_bytes());
        put(48, &table_offset.to_be_bytes());
        put(56, &(table_clusters as u32).to_be_bytes());
        put(96, &REFCOUNT_ORDER.to_be_bytes());
        put(100, &HEADER_V3_LEN.to_be_bytes());
        // Bytes 104..112 stay zero: the header extension end marker.
        let mut l1_bytes = vec![0u8; (self.l1_clusters * CLUSTER_SIZE) as usize];
        for (i, e) in l1.iter().enumerate() {
            l1_bytes[i * 8..i * 8 + 8].copy_from_slice(&e.to_be_bytes());
        }
        self.out.seek(SeekFrom::Start(0)).map_err(io_err("cannot seek in qcow2 output"))?;
        self.out.write_all(nonzero_prefix(&header)).map_err(io_err("cannot write qcow2 header"))?;
        self.out.seek(SeekFrom::Start(CLUSTER_SIZE)).map_err(io_err("cannot seek in qcow2 output"))?;
        self.out.write_all(nonzero_prefix(&l1_bytes)).map_err(io_err("cannot write qcow2 l1 table"))?;
        self.out.flush().map_err(io_err("cannot flush qcow2 output"))?;
        let stats = WriteStats { virtual_size: self.virtual_size, data_clusters: self.data_clusters, file_size };
        Ok((self.out, stats))
    }
}

/// `bytes` without its trailing zeros: metadata clusters are mostly zero, and a fresh file reads zeros where nothing
/// was written, so only the prefix is worth writing (a blank image was 256 KiB of page-cache writes for 1 KiB of data).
fn nonzero_prefix(bytes: &[u8]) -> &[u8] {
    const BLOCK: usize = 64;
    let mut end = bytes.len();
    // Zero blocks compared whole (a memcmp), then the last bytes one by one: a byte loop over 64 KiB tables cost
    // more than writing them.
    while end >= BLOCK && bytes[end - BLOCK..end] == [0u8; BLOCK] {
        end -= BLOCK;
    }
    while end > 0 && bytes[end - 1] == 0 {
        end -= 1;
    }
    &bytes[..end]
}

fn create_file(path: &Path) -> Result<BufWriter<File>, Qcow2Error> {
    File::create(path).map(BufWriter::new).map_err(io_err(format!("cannot create {}", path.display())))
}

/// Creates a blank (all-zero) qcow2 image of `virtual_size` bytes.
pub fn create_blank(path: &Path, virtual_size: u64) -> Result<WriteStats, Qcow2Error> {
    let writer = Qcow2Writer::new(create_file(path)?, virtual_size)?;
    Ok(writer.finish()?.1)
}

/// Writes a qcow2 image of `virtual_size` bytes (rounded up to 512) whose content is `source`
/// (read sequentially; a source shorter than `virtual_size` leaves the rest zero).
pub fn write_from_reader(path: &Path, mut source: impl Read, virtual_size: u64) -> Result<WriteStats, Qcow2Error> {
    let mut writer = Qcow2Writer::new(create_file(path)?, virtual_size)?;
    let mut buf = vec![0u8; CLUSTER_SIZE as usize];
    let clusters = virtual_size.div_ceil(CLUSTER_SIZE);
    for index in 0..clusters {
        let want = (virtual_size - index * CLUSTER_SIZE).min(CLUSTER_SIZE) as usize;
        let got = read_full(&mut source, &mut buf[..want]).map_err(io_err("cannot read the raw source"))?;
        if got == 0 {
            break;
        }
        writer.write_cluster(index, &buf[..got])?;
    }
    Ok(writer.finish()?.1)
}

/// Writes a qcow2 image whose content is a raw file (an ISO, a floppy, a raw disk).
pub fn convert_raw_file(src: &Path, dst: &Path) -> Result<WriteStats, Qcow2Error> {
    let file = File::open(src).map_err(io_err(format!("cannot open {}", src.display())))?;
    let size = file.metadata().map_err(io_err(format!("cannot stat {}", src.display())))?.len();
    write_from_reader(dst, io::BufReader::with_capacity(CLUSTER_SIZE as usize, file), size)
}

/// Writes a qcow2 image of `virtual_size` bytes holding `extents` (guest offset, bytes), zero elsewhere.
/// Extents may come in any order; where they overlap, later ones win.
pub fn write_extents(path: &Path, virtual_size: u64, extents: &[(u64, &[u8])]) -> Result<WriteStats, Qcow2Error> {
    let mut clusters: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    for (offset, bytes) in extents {
        let end = offset
            .checked_add(bytes.len() as u64)
            .filter(|&e| e <= virtual_size)
            .ok_or(Qcow2Error::OutOfRange { offset: *offset, len: bytes.len() as u64, size: virtual_size })?;
        let mut at = *offset;
        while at < end {
            let index = at / CLUSTER_SIZE;
            let within = (at % CLUSTER_SIZE) as usize;
            let n = ((CLUSTER_SIZE as usize - within) as u64).min(end - at) as usize;
            let cluster = clusters.entry(index).or_insert_with(|| vec![0; CLUSTER_SIZE as usize]);
            let from = (at - offset) as usize;
            cluster[within..within + n].copy_from_slice(&bytes[from..from + n]);
            at += n as u64;
        }
    }
    let mut writer = Qcow2Writer::new(create_file(path)?, virtual_size)?;
    for (index, data) in &clusters {
        let len = (virtual_size - index * CLUSTER_SIZE).min(CLUSTER_SIZE) as usize;
        writer.write_cluster(*index, &data[..len])?;
    }
    Ok(writer.finish()?.1)
}

fn read_full(source: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match source.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Reads guest data out of a qcow2 image.
pub struct Qcow2Reader<R: Read + Seek> {
    inner: R,
    file_len: u64,
    cluster_bits: u32,
    virtual_size: u64,
    l1: Vec<u64>,
    cached_l2: Option<(u64, Vec<u64>)>,
}

impl<R: Read + Seek> Qcow2Reader<R> {
    /// Parses and checks the header and L1 table.
    pub fn new(mut inner: R) -> Result<Self, Qcow2Error> {
        let file_len = inner.seek(SeekFrom::End(0)).map_err(io_err("cannot seek in qcow2 image"))?;
        let mut header = [0u8; 104];
        inner.seek(SeekFrom::Start(0)).map_err(io_err("cannot seek in qcow2 image"))?;
        let got = read_full(&mut inner, &mut header).map_err(io_err("cannot read qcow2 header"))?;
        if !sniff::is_qcow2(&header[..got]) {
            return Err(Qcow2Error::NotQcow2);
        }
        let u32_at = |at: usize| u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]]);
        let u64_at = |at: usize| (u64::from(u32_at(at)) << 32) | u64::from(u32_at(at + 4));
        let version = if got >= 8 { u32_at(4) } else { 0 };
        let min_len = match version {
            2 => 72,
            3 => 104,
            v => return Err(Qcow2Error::UnsupportedVersion(v)),
        };
        if got < min_len {
            return Err(Qcow2Error::Corrupt(format!("header is {got} bytes, version {version} needs {min_len}")));
        }
        let backing_offset = u64_at(8);
        if backing_offset != 0 {
            let len = u32_at(16).min(1023) as usize;
            let mut name = vec![0u8; len];
            let name = if backing_offset.checked_add(len as u64).is_some_and(|end| end <= file_len) {
                inner.seek(SeekFrom::Start(backing_offset)).map_err(io_err("cannot seek in qcow2 image"))?;
                let n = read_full(&mut inner, &mut name).map_err(io_err("cannot read backing file name"))?;
                String::from_utf8_lossy(&name[..n]).into_owned()
            } else {
                String::new()
            };
            return Err(Qcow2Error::BackingFile(name));
        }
        let cluster_bits = u32_at(20);
        if !(9..=21).contains(&cluster_bits) {
            return Err(Qcow2Error::InvalidClusterBits(cluster_bits));
        }
        let virtual_size = u64_at(24);
        if virtual_size > MAX_VIRTUAL_SIZE {
            return Err(Qcow2Error::TooLarge(virtual_size));
        }
        let crypt = u32_at(32);
        if crypt != 0 {
            return Err(Qcow2Error::Encrypted(crypt));
        }
        if version == 3 {
            let incompatible = u64_at(72);
            let named = [(1u64, "corrupt bit set"), (2, "external data file"), (16, "extended l2 entries")];
            for (bit, what) in named {
                if incompatible & bit != 0 {
                    return Err(Qcow2Error::UnsupportedFeature(what.to_string()));
                }
            }
            // Bit 0 (dirty) only concerns refcounts and bit 3 only compressed clusters, which we refuse one by one.
            let unknown = incompatible & !(1 | 2 | 4 | 8 | 16);
            if unknown != 0 {
                return Err(Qcow2Error::UnsupportedFeature(format!("incompatible feature bits {unknown:#x}")));
            }
        }
        let cluster_size = 1u64 << cluster_bits;
        let l1_size = u64::from(u32_at(36));
        let l1_offset = u64_at(40);
        let l2_entries = cluster_size / 8;
        let needed = virtual_size.div_ceil(cluster_size * l2_entries);
        if l1_size < needed {
            return Err(Qcow2Error::Corrupt(format!(
                "l1 table has {l1_size} entries, the virtual size needs {needed}"
            )));
        }
        if l1_size * 8 > MAX_L1_BYTES {
            return Err(Qcow2Error::Corrupt(format!("l1 table of {l1_size} entries is larger than 32 MiB")));
        }
        if l1_size > 0
            && (!l1_offset.is_multiple_of(cluster_size)
                || l1_offset.checked_add(l1_size * 8).is_none_or(|end| end > file_len))
        {
            return Err(Qcow2Error::Corrupt(format!(
                "l1 table at {l1_offset:#x} is misaligned or beyond the end of the file"
            )));
        }
        let mut raw = vec![0u8; (l1_size * 8) as usize];
        inner.seek(SeekFrom::Start(l1_offset)).map_err(io_err("cannot seek in qcow2 image"))?;
        inner.read_exact(&mut raw).map_err(io_err("cannot read qcow2 l1 table"))?;
        let l1 = raw.chunks_exact(8).map(|c| u64::from_be_bytes(c.try_into().unwrap_or([0; 8]))).collect();
        Ok(Qcow2Reader { inner, file_len, cluster_bits, virtual_size, l1, cached_l2: None })
    }

    /// The guest-visible size in bytes.
    pub fn virtual_size(&self) -> u64 {
        self.virtual_size
    }

    /// The image's cluster size in bytes.
    pub fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }

    /// Where guest cluster `index` lives in the file, `None` if it reads as zeros.
    fn host_cluster(&mut self, index: u64) -> Result<Option<u64>, Qcow2Error> {
        let cluster_size = self.cluster_size();
        let l2_entries = cluster_size / 8;
        let l1_index = index / l2_entries;
        let Some(&l1_entry) = self.l1.get(l1_index as usize) else { return Ok(None) };
        let l2_offset = l1_entry & OFFSET_MASK;
        if l2_offset == 0 {
            return Ok(None);
        }
        if self.cached_l2.as_ref().is_none_or(|(at, _)| *at != l2_offset) {
            if !l2_offset.is_multiple_of(cluster_size)
                || l2_offset.checked_add(cluster_size).is_none_or(|e| e > self.file_len)
            {
                return Err(Qcow2Error::Corrupt(format!(
                    "l2 table at {l2_offset:#x} is misaligned or beyond the end of the file"
                )));
            }
            let mut raw = vec![0u8; cluster_size as usize];
            self.inner.seek(SeekFrom::Start(l2_offset)).map_err(io_err("cannot seek in qcow2 image"))?;
            self.inner.read_exact(&mut raw).map_err(io_err("cannot read qcow2 l2 table"))?;
            let table = raw.chunks_exact(8).map(|c| u64::from_be_bytes(c.try_into().unwrap_or([0; 8]))).collect();
            self.cached_l2 = Some((l2_offset, table));
        }
        let entry = match &self.cached_l2 {
            Some((_, table)) => table[(index % l2_entries) as usize],
            None => 0,
        };
        if entry & COMPRESSED != 0 {
            return Err(Qcow2Error::Compressed(index * cluster_size));
        }
        if entry & ZERO_FLAG != 0 {
            return Ok(None);
        }
        let host = entry & OFFSET_MASK;
        if host == 0 {
            return Ok(None);
        }
        if !host.is_multiple_of(cluster_size) || host >= self.file_len {
            return Err(Qcow2Error::Corrupt(format!(
                "data cluster for guest offset {:#x} at {host:#x} is misaligned or beyond the end of the file",
                index * cluster_size
            )));
        }
        Ok(Some(host))
    }

    /// Reads guest bytes at `offset` into `buf`.
    pub fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Qcow2Error> {
        let len = buf.len() as u64;
        if offset.checked_add(len).is_none_or(|end| end > self.virtual_size) {
            return Err(Qcow2Error::OutOfRange { offset, len, size: self.virtual_size });
        }
        let cluster_size = self.cluster_size();
        let mut done = 0usize;
        while done < buf.len() {
            let at = offset + done as u64;
            let within = at % cluster_size;
            let n = ((cluster_size - within) as usize).min(buf.len() - done);
            match self.host_cluster(at / cluster_size)? {
                None => buf[done..done + n].fill(0),
                Some(host) => {
                    self.inner.seek(SeekFrom::Start(host + within)).map_err(io_err("cannot seek in qcow2 image"))?;
                    // A last cluster cut short by the end of the file reads as zeros past it, as in qemu.
                    let got = read_full(&mut self.inner, &mut buf[done..done + n])
                        .map_err(io_err("cannot read qcow2 data cluster"))?;
                    buf[done + got..done + n].fill(0);
                }
            }
            done += n;
        }
        Ok(())
    }

    /// Guest byte ranges (offset, length) that hold allocated data, in increasing order.
    pub fn allocated_ranges(&mut self) -> Result<Vec<(u64, u64)>, Qcow2Error> {
        let cluster_size = self.cluster_size();
        let l2_entries = cluster_size / 8;
        let clusters = self.virtual_size.div_ceil(cluster_size);
        let mut out: Vec<(u64, u64)> = Vec::new();
        for l1_index in 0..self.l1.len() as u64 {
            if self.l1[l1_index as usize] & OFFSET_MASK == 0 {
                continue;
            }
            let first = l1_index * l2_entries;
            for index in first..(first + l2_entries).min(clusters) {
                if self.host_cluster(index)?.is_some() {
                    let start = index * cluster_size;
                    let len = cluster_size.min(self.virtual_size - start);
                    match out.last_mut() {
                        Some((s, l)) if *s + *l == start => *l += len,
                        _ => out.push((start, len)),
                    }
                }
            }
        }
        Ok(out)
    }
}

/// Opens a qcow2 file for reading.
pub fn open(path: &Path) -> Result<Qcow2Reader<io::BufReader<File>>, Qcow2Error> {
    let file = File::open(path).map_err(io_err(format!("cannot open {}", path.display())))?;
    Qcow2Reader::new(io::BufReader::new(file))
}

/// Copies a qcow2 image into a new, compacted qcow2 image with the same guest content (what a snapshot writes).
pub fn copy(src: &Path, dst: &Path) -> Result<WriteStats, Qcow2Error> {
    let mut reader = open(src)?;
    let size = reader.virtual_size();
    let ranges = reader.allocated_ranges()?;
    let mut writer = Qcow2Writer::new(create_file(dst)?, size)?;
    let mut buf = vec![0u8; CLUSTER_SIZE as usize];
    let mut last: Option<u64> = None;
    for (start, len) in ranges {
        let (first, end) = (start / CLUSTER_SIZE, (start + len).div_ceil(CLUSTER_SIZE));
        for index in first..end {
            if last.is_some_and(|l| l >= index) {
                continue;
            }
            let at = index * CLUSTER_SIZE;
            let n = CLUSTER_SIZE.min(size - at) as usize;
            reader.read_at(at, &mut buf[..n])?;
            writer.write_cluster(index, &buf[..n])?;
            last = Some(index);
        }
    }
    Ok(writer.finish()?.1)
}

/// Writes the guest content of a qcow2 image as a raw (sparse) file.
pub fn to_raw(src: &Path, dst: &Path) -> Result<u64, Qcow2Error> {
    let mut reader = open(src)?;
    let size = reader.virtual_size();
    let mut out = File::create(dst).map_err(io_err(format!("cannot create {}", dst.display())))?;
    let mut buf = vec![0u8; CLUSTER_SIZE as usize];
    for (start, len) in reader.allocated_ranges()? {
        let mut at = start;
        while at < start + len {
            let n = CLUSTER_SIZE.min(start + len - at) as usize;
            reader.read_at(at, &mut buf[..n])?;
            out.seek(SeekFrom::Start(at)).map_err(io_err("cannot seek in raw output"))?;
            out.write_all(&buf[..n]).map_err(io_err("cannot write raw output"))?;
            at += n as u64;
        }
    }
    out.set_len(size).map_err(io_err("cannot size raw output"))?;
    Ok(size)
}

/// The format of an image file and its virtual size, as `qemu-img info` would report them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Qcow2 { virtual_size: u64 },
    Raw { size: u64 },
}

/// Tells a qcow2 file (by its magic) from a raw one.
pub fn probe(path: &Path) -> Result<ImageFormat, Qcow2Error> {
    let mut file = File::open(path).map_err(io_err(format!("cannot open {}", path.display())))?;
    let mut magic = [0u8; 4];
    let got = read_full(&mut file, &mut magic).map_err(io_err(format!("cannot read {}", path.display())))?;
    if sniff::is_qcow2(&magic[..got]) {
        return Ok(ImageFormat::Qcow2 { virtual_size: open(path)?.virtual_size() });
    }
    let size = file.metadata().map_err(io_err(format!("cannot stat {}", path.display())))?.len();
    Ok(ImageFormat::Raw { size })
}

/// Reads `len` guest bytes at `offset` from an image file of either format (short if the image ends first).
pub fn read_image_range(path: &Path, offset: u64, len: usize) -> Result<Vec<u8>, Qcow2Error> {
    match probe(path)? {
        ImageFormat::Qcow2 { virtual_size } => {
            let n = virtual_size.saturating_sub(offset).min(len as u64) as usize;
            let mut buf = vec![0u8; n];
            if n > 0 {
                open(path)?.read_at(offset, &mut buf)?;
            }
            Ok(buf)
        }
        ImageFormat::Raw { size } => {
            let n = size.saturating_sub(offset).min(len as u64) as usize;
            let mut buf = vec![0u8; n];
            let mut file = File::open(path).map_err(io_err(format!("cannot open {}", path.display())))?;
            file.seek(SeekFrom::Start(offset)).map_err(io_err("cannot seek in raw image"))?;
            file.read_exact(&mut buf).map_err(io_err("cannot read raw image"))?;
            Ok(buf)
        }
    }
}

#[cfg(test)]
mod tests;

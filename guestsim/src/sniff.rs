//! Image-format sniffing: what the first bytes of an image file say it holds (qcow2, ISO 9660, FAT, a partitioned disk).
//!
//! The one place in the workspace's guest world and mock that knows these formats' magic
//! numbers: Glance's format inspector (mockstack), [`crate::media::open_medium`], the simulated
//! firmware's disk inspection ([`crate::hypervisor::system`]) and the qcow2 reader all ask here.
//! Every function is pure over bytes the caller has read, from a raw file or through a qcow2
//! reader: the file's first bytes (`head`), or the bytes from [`ISO9660_DESCRIPTOR_OFFSET`]
//! (`descriptor`). Bytes missing because the file is shorter mean "not this format".
//!
//! The harness's `validate-image` keeps its own reader on purpose: it checks what the simulated
//! host wrote, so it shares no code with it.

/// The qcow2 magic at byte 0.
pub const QCOW2_MAGIC: [u8; 4] = *b"QFI\xfb";
/// The bytes of a qcow2 header [`qcow2_virtual_size`] reads: through the virtual size at 24..32.
pub const QCOW2_SIZE_HEADER_LEN: usize = 32;
/// Where ISO 9660's first volume descriptor starts: sector 16, of 2048 bytes.
pub const ISO9660_DESCRIPTOR_OFFSET: u64 = 16 * 2048;
/// The bytes of that descriptor [`iso9660_volume_size`] reads: through the logical block size at 128..130.
pub const ISO9660_DESCRIPTOR_LEN: usize = 132;
/// The standard identifier every ISO 9660 volume descriptor carries at its byte 1.
pub const ISO9660_IDENTIFIER: [u8; 5] = *b"CD001";
/// The GPT header's signature, at the start of the disk's second 512-byte sector.
pub const GPT_SIGNATURE: [u8; 8] = *b"EFI PART";

/// Whether `head` starts with the qcow2 magic.
pub fn is_qcow2(head: &[u8]) -> bool {
    head.starts_with(&QCOW2_MAGIC)
}

/// The guest-visible size a qcow2 header records (big-endian at 24..32); `None` unless `head`
/// starts with the magic and holds [`QCOW2_SIZE_HEADER_LEN`] bytes.
pub fn qcow2_virtual_size(head: &[u8]) -> Option<u64> {
    if !is_qcow2(head) {
        return None;
    }
    Some(u64::from_be_bytes(head.get(24..32)?.try_into().ok()?))
}

/// Whether `descriptor` (the bytes from [`ISO9660_DESCRIPTOR_OFFSET`]) carries the ISO 9660 identifier.
pub fn is_iso9660(descriptor: &[u8]) -> bool {
    descriptor.get(1..6) == Some(&ISO9660_IDENTIFIER[..])
}

/// The size of an ISO 9660 volume as its first descriptor states it: the volume space size
/// (both-endian u32 at 80) times the logical block size (both-endian u16 at 128); `None` unless
/// `descriptor` carries the identifier and holds [`ISO9660_DESCRIPTOR_LEN`] bytes.
pub fn iso9660_volume_size(descriptor: &[u8]) -> Option<u64> {
    if !is_iso9660(descriptor) || descriptor.len() < ISO9660_DESCRIPTOR_LEN {
        return None;
    }
    let blocks = u32::from_le_bytes(descriptor[80..84].try_into().ok()?);
    let block_size = u16::from_le_bytes(descriptor[128..130].try_into().ok()?);
    Some(u64::from(blocks) * u64::from(block_size))
}

/// Whether the first sector ends with the 0x55AA boot signature, which BIOS firmware boots.
pub fn has_boot_signature(head: &[u8]) -> bool {
    head.get(510..512) == Some(&[0x55, 0xaa][..])
}

/// Whether the second 512-byte sector starts with a GPT header's signature.
pub fn has_gpt_header(head: &[u8]) -> bool {
    head.get(512..520) == Some(&GPT_SIGNATURE[..])
}

/// Whether the first sector carries a plausible FAT BIOS parameter block (a jump instruction,
/// a sector size FAT allows, a power-of-two cluster, reserved sectors, one or two FATs).
pub fn is_fat_boot_sector(head: &[u8]) -> bool {
    if head.len() < 512 {
        return false;
    }
    let bytes_per_sector = u16::from_le_bytes([head[11], head[12]]);
    let sectors_per_cluster = head[13];
    let reserved = u16::from_le_bytes([head[14], head[15]]);
    let fats = head[16];
    matches!(head[0], 0xEB | 0xE9)
        && matches!(bytes_per_sector, 512 | 1024 | 2048 | 4096)
        && sectors_per_cluster.is_power_of_two()
        && reserved >= 1
        && matches!(fats, 1 | 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qcow2_headers_give_their_virtual_size() {
        let mut header = vec![0u8; 512];
        header[0..4].copy_from_slice(&QCOW2_MAGIC);
        header[24..32].copy_from_slice(&(5u64 << 30).to_be_bytes());
        assert!(is_qcow2(&header));
        assert_eq!(qcow2_virtual_size(&header), Some(5 << 30));
        assert_eq!(qcow2_virtual_size(&header[..31]), None, "a truncated header tells no size");
        assert!(is_qcow2(&header[..4]));
        assert!(!is_qcow2(&header[..3]));
        assert!(!is_qcow2(&[1; 512]));
        assert_eq!(qcow2_virtual_size(&[1; 512]), None);
    }

    #[test]
    fn iso9660_descriptors_give_their_volume_size() {
        let mut descriptor = vec![0u8; ISO9660_DESCRIPTOR_LEN];
        descriptor[0] = 1;
        descriptor[1..6].copy_from_slice(&ISO9660_IDENTIFIER);
        descriptor[80..84].copy_from_slice(&17u32.to_le_bytes());
        descriptor[128..130].copy_from_slice(&2048u16.to_le_bytes());
        assert!(is_iso9660(&descriptor));
        assert_eq!(iso9660_volume_size(&descriptor), Some(17 * 2048));
        assert!(is_iso9660(&descriptor[..6]));
        assert_eq!(iso9660_volume_size(&descriptor[..131]), None);
        assert!(!is_iso9660(&descriptor[..5]));
        assert!(!is_iso9660(&[0; ISO9660_DESCRIPTOR_LEN]));
    }

    #[test]
    fn disk_signatures() {
        let mut head = vec![0u8; 34 * 512];
        assert!(!has_boot_signature(&head) && !has_gpt_header(&head) && !is_fat_boot_sector(&head));
        head[510..512].copy_from_slice(&[0x55, 0xaa]);
        head[512..520].copy_from_slice(&GPT_SIGNATURE);
        assert!(has_boot_signature(&head) && has_gpt_header(&head));
        assert!(!has_boot_signature(&head[..511]) && !has_gpt_header(&head[..519]));
        head[0] = 0xEB;
        head[11..13].copy_from_slice(&512u16.to_le_bytes());
        head[13] = 1;
        head[14..16].copy_from_slice(&1u16.to_le_bytes());
        head[16] = 2;
        assert!(is_fat_boot_sector(&head));
        assert!(!is_fat_boot_sector(&head[..511]));
        head[16] = 3;
        assert!(!is_fat_boot_sector(&head));
    }
}

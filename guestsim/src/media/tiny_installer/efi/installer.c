/*
 * The tiny installer for UEFI: the counterpart of ../boot.asm, as the EFI application an installer ISO's El Torito
 * EFI entry carries (\EFI\BOOT\BOOTX64.EFI on the FAT image of that entry).
 *
 * It makes the decisions boot.asm makes and prints the same bytes, from the same configuration
 * (/.isoharness/installer.cfg on its own CD, written by guestsim's InstallerScript::config), so that the harness
 * reads one console language from mockstack's simulated guest, the BIOS installer and this one. What differs is
 * only what the firmware gives: here OVMF's drivers read and write the disks (BlockIo), a device's name comes
 * from its device path as libvirt and Nova name it, and the hardware checks ask UEFI (the SecureBoot variable, the
 * TCG2 protocol) instead of the BIOS.
 *
 * Booted from a hard disk instead (the ESP it installed is a copy of its own boot image, so OVMF boots this same
 * program from the installed disk), it is the installed system: it prints the BIOS MBR's login prompt and idles.
 *
 * Every byte goes straight to COM1, as boot.asm does, not through ConOut: OVMF's console would add its own
 * escape sequences, and a guest's installer kernel writes to the UART too.
 *
 * Built by build.sh (gnu-efi's crt0 and linker script, no libefi: every service is called through the tables).
 */

#include <efi.h>

typedef UINT8 u8;
typedef UINT16 u16;
typedef UINT32 u32;
typedef UINT64 u64;

/* ---------------------------------------------------------------------------------------------------------------
 * What the compiler may call on its own (struct copies, zeroing loops), without a C library. */

void *memset(void *dst, int c, unsigned long n)
{
    u8 *d = dst;
    while (n--)
        *d++ = (u8)c;
    return dst;
}

void *memcpy(void *dst, const void *src, unsigned long n)
{
    u8 *d = dst;
    const u8 *s = src;
    while (n--)
        *d++ = *s++;
    return dst;
}

static int mem_equal(const void *a, const void *b, UINTN n)
{
    const u8 *x = a, *y = b;
    while (n--)
        if (*x++ != *y++)
            return 0;
    return 1;
}

static UINTN str_len(const char *s)
{
    UINTN n = 0;
    while (s[n])
        n++;
    return n;
}

static int str_cmp(const char *a, const char *b)
{
    while (*a && *a == *b)
        a++, b++;
    return (u8)*a - (u8)*b;
}

static u16 le16(const u8 *p) { return (u16)(p[0] | p[1] << 8); }
static u32 le32(const u8 *p) { return (u32)p[0] | (u32)p[1] << 8 | (u32)p[2] << 16 | (u32)p[3] << 24; }
static void put32(u8 *p, u32 v) { for (int i = 0; i < 4; i++) p[i] = (u8)(v >> 8 * i); }
static void put64(u8 *p, u64 v) { for (int i = 0; i < 8; i++) p[i] = (u8)(v >> 8 * i); }

/* ---------------------------------------------------------------------------------------------------------------
 * Firmware */

static EFI_BOOT_SERVICES *BS;
static EFI_RUNTIME_SERVICES *RT;

static EFI_GUID block_io_guid = EFI_BLOCK_IO_PROTOCOL_GUID;
static EFI_GUID device_path_guid = EFI_DEVICE_PATH_PROTOCOL_GUID;
static EFI_GUID loaded_image_guid = EFI_LOADED_IMAGE_PROTOCOL_GUID;
static EFI_GUID pci_io_guid = EFI_PCI_IO_PROTOCOL_GUID;
static EFI_GUID global_variable_guid = EFI_GLOBAL_VARIABLE;
/* EFI_TCG2_PROTOCOL_GUID (TCG EFI Protocol Specification): installed only when the firmware found a TPM 2.0. */
static EFI_GUID tcg2_guid = {0x607f766c, 0x7455, 0x42be, {0x93, 0x0b, 0xe4, 0xd7, 0x6d, 0xb2, 0x72, 0x0f}};

/* Page-aligned, so that any controller's IoAlign is met. Not freed: the program ends in a reset or an idle loop. */
static void *alloc(UINTN bytes)
{
    EFI_PHYSICAL_ADDRESS at = 0;
    UINTN pages = (bytes + 4095) / 4096;
    if (BS->AllocatePages(AllocateAnyPages, EfiLoaderData, pages, &at) != EFI_SUCCESS)
        return NULL;
    memset((void *)(UINTN)at, 0, pages * 4096);
    return (void *)(UINTN)at;
}

static void halt(void)
{
    for (;;)
        __asm__ volatile("hlt");
}

/* ---------------------------------------------------------------------------------------------------------------
 * COM1, polled, as boot.asm's putc: '\n' goes out as CR LF. OVMF has already programmed the UART (115200 8N1). */

static u8 inb(u16 port)
{
    u8 v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

static void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }

static void raw_out(u8 c)
{
    while (!(inb(0x3fd) & 0x20))
        ;
    outb(0x3f8, c);
}

static void put_char(char c)
{
    if (c == '\n')
        raw_out('\r');
    raw_out((u8)c);
}

static void print(const char *s)
{
    while (*s)
        put_char(*s++);
}

/* ---------------------------------------------------------------------------------------------------------------
 * The configuration and its templates (see boot.asm's T_* and script.rs's Line). */

enum {
    T_BANNER, T_REFUSED, T_WAITING, T_NO_DISK, T_WHY_NOT_VIRTIO, T_LOADED, T_TOO_SMALL, T_INSTALLING, T_COMPLETE,
    T_CDROM_PATH, T_FLOPPY_PATH, T_NO_WRITABLE, T_WRITE_FAILED, T_LACKS_UEFI, T_LACKS_SB, T_LACKS_TPM, T_BAD_FLOPPY,
    TEXT_COUNT
};
enum { H_BOOT = 1, H_TARGET, H_BUS, H_DRIVER, H_MEDIUM, H_SIZE, H_MISSING, H_REFUSALS };

static const char msg_banner[] = "\nisoharness tiny installer\n";
static const char msg_no_config[] =
    "isoharness tiny installer: no /.isoharness/installer.cfg on the boot medium; cannot install\n";
static const char msg_bad_config[] = "isoharness tiny installer: /.isoharness/installer.cfg is not a configuration this "
                                     "installer reads; cannot install\n";
static const char msg_unknown_fact[] = "isoharness tiny installer: the guest facts name a virtio driver source this "
                                       "installer cannot act on; cannot install\n";
/* What the BIOS installer's MBR prints, byte for byte (its own CR LFs, no translation). */
static const char msg_booted[] =
    "\r\nisoharness tiny guest: booted from the installed disk\r\nisoharness-guest login: ";

static u8 *cfg;
static const char *holes[9];

static const char *text(int line) { return (const char *)cfg + le16(cfg + 32 + 2 * line); }

/* Prints a template with its holes filled (a hole not known yet prints nothing), then a line end. */
static void say(int line)
{
    for (const u8 *p = (const u8 *)text(line); *p; p++) {
        if (*p <= 8) {
            if (holes[*p])
                print(holes[*p]);
        } else {
            put_char((char)*p);
        }
    }
    put_char('\n');
}

/* Appends s to the NUL-terminated list in buf (cap bytes), with sep before it unless the list is empty. */
static void append(char *buf, UINTN cap, const char *sep, const char *s)
{
    UINTN at = str_len(buf);
    if (at)
        for (; *sep && at + 1 < cap; sep++)
            buf[at++] = *sep;
    for (; *s && at + 1 < cap; s++)
        buf[at++] = *s;
    buf[at] = 0;
}

/* ---------------------------------------------------------------------------------------------------------------
 * Devices: every whole BlockIo device that has a libvirt name. */

typedef struct {
    EFI_BLOCK_IO *bio;
    EFI_DEVICE_PATH *path;
    char name[8];
    const char *bus;
    u8 virtio;   /* its index among the virtio-blk devices, plus one; 0 for SATA and IDE */
    u8 cdrom;
} Dev;

#define MAX_DEVS 64
static Dev *devs;
static UINTN dev_count;

static EFI_DEVICE_PATH *dp_next(EFI_DEVICE_PATH *n) { return (EFI_DEVICE_PATH *)((u8 *)n + le16(n->Length)); }
static int dp_end(EFI_DEVICE_PATH *n) { return n->Type == 0x7f; }

static UINTN dp_len(EFI_DEVICE_PATH *p)
{
    EFI_DEVICE_PATH *n = p;
    while (!dp_end(n))
        n = dp_next(n);
    return (UINTN)((u8 *)n - (u8 *)p);
}

/* "vd" + libvirt's letters for index i: a..z, aa..zz, ... */
static void disk_name(char *out, const char *prefix, UINTN i)
{
    char letters[4];
    int n = 0;
    for (long v = (long)i; v >= 0 && n < 3; v = v / 26 - 1)
        letters[n++] = (char)('a' + v % 26);
    out[0] = prefix[0];
    out[1] = prefix[1];
    for (int k = 0; k < n; k++)
        out[2 + k] = letters[n - 1 - k];
    out[2 + n] = 0;
}

/* The virtio-blk PCI functions (transitional 1af4:1001, modern 1af4:1042), in PCI location order: libvirt gives
 * them their vdX names in that order, and every one counts, read-only or not, with a BlockIo or not. */
#define MAX_VIRTIO 32
static EFI_HANDLE virtio_pci[MAX_VIRTIO];
static UINTN virtio_count;

static void find_virtio(void)
{
    EFI_HANDLE *handles;
    UINTN n;
    u64 keys[MAX_VIRTIO];
    if (BS->LocateHandleBuffer(ByProtocol, &pci_io_guid, NULL, &n, &handles) != EFI_SUCCESS)
        return;
    for (UINTN i = 0; i < n; i++) {
        EFI_PCI_IO_PROTOCOL *pci;
        u32 id;
        UINTN seg, bus, dev, fn;
        if (BS->HandleProtocol(handles[i], &pci_io_guid, (void **)&pci) != EFI_SUCCESS)
            continue;
        if (pci->Pci.Read(pci, EfiPciIoWidthUint32, 0, 1, &id) != EFI_SUCCESS)
            continue;
        if (id != 0x10011af4 && id != 0x10421af4)
            continue;
        if (pci->GetLocation(pci, &seg, &bus, &dev, &fn) != EFI_SUCCESS || virtio_count == MAX_VIRTIO)
            continue;
        u64 key = (u64)seg << 32 | bus << 16 | dev << 8 | fn;
        UINTN at = virtio_count++;
        for (; at > 0 && keys[at - 1] > key; at--) {
            keys[at] = keys[at - 1];
            virtio_pci[at] = virtio_pci[at - 1];
        }
        keys[at] = key;
        virtio_pci[at] = handles[i];
    }
    BS->FreePool(handles);
}

/* Names every whole BlockIo device: SATA sd[a+port] (libvirt's unit on q35's AHCI is the port), IDE
 * hd[a+2*channel+unit], virtio-blk vdX. Partitions (LogicalPartition) and unnamed buses are left out. */
static void find_devices(void)
{
    EFI_HANDLE *handles;
    UINTN n;
    find_virtio();
    devs = alloc(MAX_DEVS * sizeof(Dev));
    if (!devs || BS->LocateHandleBuffer(ByProtocol, &block_io_guid, NULL, &n, &handles) != EFI_SUCCESS)
        return;
    for (UINTN i = 0; i < n && dev_count < MAX_DEVS; i++) {
        Dev *d = &devs[dev_count];
        memset(d, 0, sizeof *d);
        if (BS->HandleProtocol(handles[i], &block_io_guid, (void **)&d->bio) != EFI_SUCCESS ||
            d->bio->Media->LogicalPartition)
            continue;
        if (BS->HandleProtocol(handles[i], &device_path_guid, (void **)&d->path) != EFI_SUCCESS)
            continue;
        for (EFI_DEVICE_PATH *node = d->path; !dp_end(node); node = dp_next(node)) {
            u8 *raw = (u8 *)node;
            if (node->Type == MESSAGING_DEVICE_PATH && node->SubType == MSG_SATA_DP) {
                disk_name(d->name, "sd", le16(raw + 4));
                d->bus = "sata";
            } else if (node->Type == MESSAGING_DEVICE_PATH && node->SubType == MSG_ATAPI_DP) {
                disk_name(d->name, "hd", 2 * (raw[4] & 1) + (raw[5] & 1));
                d->bus = "ide";
            }
        }
        if (!d->name[0]) {
            EFI_DEVICE_PATH *rest = d->path;
            EFI_HANDLE pci;
            if (BS->LocateDevicePath(&pci_io_guid, &rest, &pci) != EFI_SUCCESS)
                continue;
            for (UINTN v = 0; v < virtio_count; v++)
                if (virtio_pci[v] == pci) {
                    disk_name(d->name, "vd", v);
                    d->bus = "virtio";
                    d->virtio = (u8)(v + 1);
                }
            if (!d->name[0])
                continue;
        }
        EFI_BLOCK_IO_MEDIA *m = d->bio->Media;
        d->cdrom = m->ReadOnly || (m->BlockSize == 2048 && !d->virtio);
        /* name order: the order every search below goes in */
        UINTN at = dev_count++;
        Dev this = *d;
        for (; at > 0 && str_cmp(devs[at - 1].name, this.name) > 0; at--)
            devs[at] = devs[at - 1];
        devs[at] = this;
    }
    BS->FreePool(handles);
}

/* ---------------------------------------------------------------------------------------------------------------
 * ISO 9660, as boot.asm's iso_lookup: primary identifiers, case-insensitive, ";1" and a final "." dropped. */

static u8 *sector;

/* 2048-byte sector lba of a CD (or of a read-only virtio disk holding an ISO). A fresh medium may answer
 * MEDIA_CHANGED once; the retry reads with the new MediaId. */
static int read_sector(EFI_BLOCK_IO *bio, u32 lba)
{
    u32 bs = bio->Media->BlockSize;
    if (!bs || 2048 % bs)
        return 0;
    for (int tries = 0; tries < 3; tries++)
        if (bio->ReadBlocks(bio, bio->Media->MediaId, (EFI_LBA)lba * (2048 / bs), 2048, sector) == EFI_SUCCESS)
            return 1;
    return 0;
}

static char upper(char c) { return c >= 'a' && c <= 'z' ? c - 0x20 : c; }

/* Whether the directory record rec names the path component at *path. */
static int iso_name_matches(const u8 *rec, const char *path)
{
    UINTN len = 0, id_len = rec[32];
    const char *id = (const char *)rec + 33;
    while (len < id_len && id[len] != ';')
        len++;
    if (len == 0)
        return 0;
    if (id[len - 1] == '.')
        len--;
    for (UINTN i = 0; i < len; i++)
        if (upper(path[i]) != upper(id[i]))
            return 0;
    return path[len] == 0 || path[len] == '/';
}

/* Looks the '/'-separated path up; 1 with *lba and *size of the file when it is there. */
static int iso_lookup(EFI_BLOCK_IO *bio, const char *path, u32 *lba, u32 *size)
{
    if (!read_sector(bio, 16) || !mem_equal(sector, "\001CD0", 4))
        return 0;
    u32 dir = le32(sector + 156 + 2), bytes = le32(sector + 156 + 10);
    for (;;) {
        u32 sectors = bytes >> 11;
        const u8 *match = NULL;
        if (sectors == 0 || sectors > 64)
            return 0;
        for (; sectors && !match; sectors--, dir++) {
            if (!read_sector(bio, dir))
                return 0;
            for (UINTN at = 0; at < 2048 - 34;) {
                u8 len = sector[at];
                if (len == 0)
                    break;
                if (len < 34)
                    return 0;
                if (iso_name_matches(sector + at, path)) {
                    match = sector + at;
                    break;
                }
                at += len;
            }
        }
        if (!match)
            return 0;
        int is_dir = match[25] & 2;
        dir = le32(match + 2);
        bytes = le32(match + 10);
        while (*path && *path != '/')
            path++;
        if (!*path) {
            if (is_dir)
                return 0;
            *lba = dir;
            *size = bytes;
            return 1;
        }
        path++;
        if (!is_dir)
            return 0;
    }
}

/* ---------------------------------------------------------------------------------------------------------------
 * Reading the configuration from the boot CD. Returns the message to print when it cannot be used. */

static const char *read_config(EFI_BLOCK_IO *boot_cd)
{
    u32 lba, size;
    if (!boot_cd || !iso_lookup(boot_cd, "_isoharness/installer.cfg", &lba, &size))
        return msg_no_config;
    if (size > 2048 || size < 64)
        return msg_bad_config;
    if (!read_sector(boot_cd, lba))
        return msg_no_config;
    memcpy(cfg, sector, 2048);
    if (!mem_equal(cfg, "ISOHCFG1", 8))
        return msg_bad_config;
    if (cfg[8] > 3)
        return msg_unknown_fact;
    for (int i = 0; i < TEXT_COUNT; i++) {
        u16 at = le16(cfg + 32 + 2 * i);
        if (at < 64 || at >= 2048)
            return msg_bad_config;
    }
    if (cfg[2047] != 0)
        return msg_bad_config;
    return NULL;
}

/* boot.asm's try_layouts: the CD-ROM layout path, then (beside txtsetup.oem) the floppy layout path. */
static int try_layouts(EFI_BLOCK_IO *bio)
{
    u32 lba, size;
    const char *path = text(T_CDROM_PATH);
    if (*path) {
        holes[H_DRIVER] = path;
        if (iso_lookup(bio, path + 1, &lba, &size))
            return 1;
    }
    path = text(T_FLOPPY_PATH);
    if (!*path)
        return 0;
    holes[H_DRIVER] = path;
    return iso_lookup(bio, "txtsetup.oem", &lba, &size) && iso_lookup(bio, path + 1, &lba, &size);
}

/* SIZE as boot.asm's format_size: whole GiB from 1 GiB up, else whole MiB. */
static char size_text[32];

static void format_size(u64 sectors)
{
    const char *unit = " GiB";
    u64 v = sectors >> 21;
    char digits[24];
    int n = 0;
    if (sectors < 1u << 21) {
        v = sectors >> 11;
        unit = " MiB";
    }
    do
        digits[n++] = (char)('0' + v % 10);
    while (v /= 10);
    UINTN at = 0;
    while (n)
        size_text[at++] = digits[--n];
    size_text[at] = 0;
    append(size_text, sizeof size_text, "", unit);
    holes[H_SIZE] = size_text;
}

/* ---------------------------------------------------------------------------------------------------------------
 * The install: what mockstack's simulated installer writes for a UEFI install (hypervisor/system.rs), with this
 * program's own boot image as the EFI system partition. */

static const u8 efi_system[16] = {0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11,
                                  0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b};
static const u8 linux_filesystem[16] = {0xaf, 0x3d, 0xc6, 0x0f, 0x83, 0x84, 0x72, 0x47,
                                        0x8e, 0x79, 0x3d, 0x69, 0xd8, 0x47, 0x7d, 0xe4};
static const u8 ms_basic_data[16] = {0xa2, 0xa0, 0xd0, 0xeb, 0xe5, 0xb9, 0x33, 0x44,
                                     0x87, 0xc0, 0x68, 0xb6, 0xb7, 0x26, 0x99, 0xc7};

/* system.rs's deterministic GUIDs: 15050a7e-0000-000n-8000-00000000000n for partition n, and
 * 15050a7e-1505-0a7e-8000-000000000000 for the disk. */
static void fixed_guid(u8 *g, u16 b, u16 c, u8 last)
{
    memset(g, 0, 16);
    put32(g, 0x15050a7e);
    g[4] = (u8)b, g[5] = (u8)(b >> 8);
    g[6] = (u8)c, g[7] = (u8)(c >> 8);
    g[8] = 0x80;
    g[15] = last;
}

static void gpt_entry(u8 *e, const u8 *type, u8 n, u64 first, u64 last, const char *name)
{
    memcpy(e, type, 16);
    fixed_guid(e + 16, 0, n, n);
    put64(e + 32, first);
    put64(e + 40, last);
    for (UINTN i = 0; name[i] && i < 36; i++)
        e[56 + 2 * i] = (u8)name[i];
}

static void gpt_header(u8 *h, u64 my_lba, u64 alternate, u64 entries_lba, u64 sectors, u32 entries_crc)
{
    u32 crc = 0;
    memcpy(h, "EFI PART", 8);
    put32(h + 8, 0x00010000);
    put32(h + 12, 92);
    put64(h + 24, my_lba);
    put64(h + 32, alternate);
    put64(h + 40, 34);
    put64(h + 48, sectors - 34);
    fixed_guid(h + 56, 0x1505, 0x0a7e, 0);
    put64(h + 72, entries_lba);
    put32(h + 80, 128);
    put32(h + 84, 128);
    put32(h + 88, entries_crc);
    BS->CalculateCrc32(h, 92, &crc);
    put32(h + 16, crc);
}

/* Writes the partition tables and copies the boot image onto the ESP; 0 when the disk refused a write. */
static int install(EFI_BLOCK_IO *disk, u64 sectors, EFI_BLOCK_IO *image, int windows)
{
    EFI_BLOCK_IO_MEDIA *m = disk->Media, *im = image->Media;
    const UINTN chunk = 64 * 1024;
    u8 *buf = alloc(chunk), *head = alloc(34 * 512), *tail = alloc(33 * 512);
    if (!buf || !head || !tail || m->BlockSize != 512 || !im->BlockSize || chunk % im->BlockSize)
        return 0;

    /* The ESP is as big as the boot image. OVMF's El Torito partition can be longer than the image (it counts a
     * no-emulation entry's 512-byte load sectors as 2048-byte blocks), so the image's own FAT boot sector says how
     * long it is when it can. */
    u64 part_bytes = (im->LastBlock + 1) * im->BlockSize, esp_bytes = part_bytes;
    if (image->ReadBlocks(image, im->MediaId, 0, im->BlockSize < 512 ? 512 : im->BlockSize, buf) != EFI_SUCCESS)
        return 0;
    if (buf[510] == 0x55 && buf[511] == 0xaa) {
        u64 total = le16(buf + 19) ? le16(buf + 19) : le32(buf + 32);
        u64 fat_bytes = total * le16(buf + 11);
        if (fat_bytes && fat_bytes <= part_bytes)
            esp_bytes = (fat_bytes + im->BlockSize - 1) / im->BlockSize * im->BlockSize;
    }
    u64 esp_sectors = esp_bytes / 512, esp_end = 2048 + esp_sectors - 1;
    if (sectors < esp_end + 1 + 34 + 1)
        return 0;
    for (u64 at = 0; at < esp_bytes; at += chunk) {
        UINTN n = esp_bytes - at < chunk ? (UINTN)(esp_bytes - at) : chunk;
        if (image->ReadBlocks(image, im->MediaId, at / im->BlockSize, n, buf) != EFI_SUCCESS ||
            disk->WriteBlocks(disk, m->MediaId, 2048 + at / 512, n, buf) != EFI_SUCCESS)
            return 0;
    }

    /* protective MBR (CHS fields as system.rs writes them), primary header and entries, backup entries and header */
    u8 *mbr = head, *entries = head + 1024;
    mbr[446 + 1] = 0xfe, mbr[446 + 2] = 0xff, mbr[446 + 3] = 0xff;
    mbr[446 + 4] = 0xee;
    mbr[446 + 5] = 0xfe, mbr[446 + 6] = 0xff, mbr[446 + 7] = 0xff;
    put32(mbr + 446 + 8, 1);
    put32(mbr + 446 + 12, sectors - 1 > 0xffffffffu ? 0xffffffffu : (u32)(sectors - 1));
    mbr[510] = 0x55, mbr[511] = 0xaa;
    gpt_entry(entries, efi_system, 1, 2048, esp_end, "EFI System Partition");
    gpt_entry(entries + 128, windows ? ms_basic_data : linux_filesystem, 2, esp_end + 1, sectors - 34, "root");
    u32 entries_crc = 0;
    BS->CalculateCrc32(entries, 128 * 128, &entries_crc);
    gpt_header(head + 512, 1, sectors - 1, 2, sectors, entries_crc);
    memcpy(tail, entries, 128 * 128);
    gpt_header(tail + 128 * 128, sectors - 1, 1, sectors - 33, sectors, entries_crc);
    if (disk->WriteBlocks(disk, m->MediaId, 0, 34 * 512, head) != EFI_SUCCESS ||
        disk->WriteBlocks(disk, m->MediaId, sectors - 33, 33 * 512, tail) != EFI_SUCCESS)
        return 0;
    return disk->FlushBlocks(disk) == EFI_SUCCESS;
}

/* ---------------------------------------------------------------------------------------------------------------
 * The installer, in boot.asm's order. */

static char missing[512];
static char refusals[1024];

static void installer(EFI_LOADED_IMAGE *loaded, EFI_DEVICE_PATH *image_path, UINTN cd_prefix)
{
    print(msg_banner);

    /* OVMF connects only what QEMU's boot order names; an installer's kernel sees every device. */
    EFI_HANDLE *handles;
    UINTN n;
    if (BS->LocateHandleBuffer(AllHandles, NULL, NULL, &n, &handles) == EFI_SUCCESS) {
        for (UINTN i = 0; i < n; i++)
            BS->ConnectController(handles[i], NULL, NULL, TRUE);
        BS->FreePool(handles);
    }

    cfg = alloc(2048);
    sector = alloc(2048);
    if (!cfg || !sector)
        halt();
    find_devices();

    /* the boot CD: the whole device whose path is the image's path up to its CD-ROM node */
    Dev *boot = NULL;
    for (UINTN i = 0; i < dev_count; i++)
        if (dp_len(devs[i].path) == cd_prefix && mem_equal(devs[i].path, image_path, cd_prefix))
            boot = &devs[i];
    const char *failure = read_config(boot ? boot->bio : NULL);
    if (failure) {
        print(failure);
        halt();
    }
    holes[H_BOOT] = boot ? boot->name : "?";
    say(T_BANNER);

    /* I1: the hardware the guest needs. UEFI is what runs this; Secure Boot is on when the firmware says so; a TPM
     * 2.0 is there when the firmware installed its TCG2 protocol. */
    u8 flags = cfg[9];
    if (flags & 4) {
        u8 secure_boot = 0;
        UINTN size = 1;
        if (RT->GetVariable(L"SecureBoot", &global_variable_guid, NULL, &size, &secure_boot) != EFI_SUCCESS ||
            secure_boot != 1)
            append(missing, sizeof missing, ", ", text(T_LACKS_SB));
    }
    if (flags & 8) {
        void *tcg2;
        if (BS->LocateProtocol(&tcg2_guid, NULL, &tcg2) != EFI_SUCCESS)
            append(missing, sizeof missing, ", ", text(T_LACKS_TPM));
    }
    if (missing[0]) {
        holes[H_MISSING] = missing;
        say(T_REFUSED);
        halt();
    }
    if (!(flags & 1)) {
        say(T_WAITING);
        halt();
    }

    /* I2: the driver, from the CD-ROMs in name order (OVMF has no floppy driver, so a floppy guest finds none). */
    u8 source = cfg[8];
    int driver_found = 0;
    if (source == 1)
        for (UINTN i = 0; i < dev_count && !driver_found; i++)
            if (devs[i].cdrom && try_layouts(devs[i].bio)) {
                driver_found = 1;
                holes[H_MEDIUM] = devs[i].name;
            }

    /* I3: writable virtio disks in PCI order (vda, vdb.. are exactly that order), then the IDE and SATA disks in
     * name order; the first usable one is the target. */
    Dev *target = NULL;
    for (UINTN v = 1; v <= virtio_count && !target; v++)
        for (UINTN i = 0; i < dev_count; i++) {
            Dev *d = &devs[i];
            if (d->virtio != v || d->cdrom || !d->bio->Media->MediaPresent)
                continue;
            if (source == 0 || driver_found) {
                target = d;
                break;
            }
            append(refusals, sizeof refusals, "; ", d->name);
            append(refusals, sizeof refusals, "", " (virtio): ");
            append(refusals, sizeof refusals, "", text(T_WHY_NOT_VIRTIO));
        }
    for (UINTN i = 0; i < dev_count && !target; i++) {
        Dev *d = &devs[i];
        if (!d->virtio && !d->cdrom && d->bio->Media->MediaPresent)
            target = d;
    }
    if (!target) {
        holes[H_REFUSALS] = refusals[0] ? refusals : text(T_NO_WRITABLE);
        say(T_NO_DISK);
        halt();
    }
    holes[H_TARGET] = target->name;
    holes[H_BUS] = target->bus;
    if (target->virtio && driver_found)
        say(T_LOADED);

    /* I4: big enough? */
    EFI_BLOCK_IO_MEDIA *m = target->bio->Media;
    u64 sectors = (m->LastBlock + 1) * m->BlockSize / 512;
    if (sectors < *(u64 *)(cfg + 12)) {
        format_size(sectors);
        say(T_TOO_SMALL);
        halt();
    }
    say(T_INSTALLING);
    EFI_BLOCK_IO *image;
    int windows = mem_equal(text(T_BANNER), "Windows Setup", 13);
    if (BS->HandleProtocol(loaded->DeviceHandle, &block_io_guid, (void **)&image) != EFI_SUCCESS ||
        !install(target->bio, sectors, image, windows)) {
        say(T_WRITE_FAILED);
        halt();
    }
    say(T_COMPLETE);
    /* ten seconds, as boot.asm lingers: a libvirt host serves the console only while the guest runs */
    BS->Stall(10 * 1000 * 1000);
    RT->ResetSystem(EfiResetShutdown, EFI_SUCCESS, 0, NULL);
    halt();
}

EFI_STATUS efi_main(EFI_HANDLE image_handle, EFI_SYSTEM_TABLE *st)
{
    BS = st->BootServices;
    RT = st->RuntimeServices;
    /* The boot manager arms a five-minute watchdog; an installer waiting for a person (or the installed system at
     * its login prompt) must not be reset by it. */
    BS->SetWatchdogTimer(0, 0, 0, NULL);

    EFI_LOADED_IMAGE *loaded;
    EFI_DEVICE_PATH *path = NULL;
    if (BS->HandleProtocol(image_handle, &loaded_image_guid, (void **)&loaded) != EFI_SUCCESS ||
        BS->HandleProtocol(loaded->DeviceHandle, &device_path_guid, (void **)&path) != EFI_SUCCESS)
        path = NULL;

    /* Booted from an El Torito image (a CD-ROM media node) it is the installer; from a partition of a disk, the
     * installed system. */
    for (EFI_DEVICE_PATH *node = path; node && !dp_end(node); node = dp_next(node))
        if (node->Type == MEDIA_DEVICE_PATH && node->SubType == MEDIA_CDROM_DP)
            installer(loaded, path, (UINTN)((u8 *)node - (u8 *)path));
    for (const char *s = msg_booted; *s; s++)
        raw_out((u8)*s);
    halt();
    return EFI_SUCCESS;
}

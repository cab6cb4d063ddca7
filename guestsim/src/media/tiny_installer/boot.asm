; The tiny installer: a real El Torito (no-emulation) boot image for BIOS PCs (i440fx machines).
;
; It behaves as its guest's installer would, from the guest facts its ISO carries: it reads the
; compact form `/.isoharness/installer.cfg` (written by guestsim beside `guest.toml`, see
; tiny_installer.rs for the layout) from its own CD through the BIOS, then drives the hardware
; itself, as a real installer's kernel does, because libvirt starts QEMU with `-boot strict=on`
; and SeaBIOS maps only the devices in the boot order:
;   - the PIIX IDE controller's four positions (hda..hdd): ATA disks, and ATAPI CD-ROMs read in
;     PIO with READ(10), ISO 9660 directories looked up by their primary identifiers;
;   - the floppy controller (fda): FAT12 read through ISA DMA channel 2;
;   - legacy (transitional) virtio-blk devices on PCI bus 0 (vda, vdb.. in slot order).
; A virtio disk is a target only when the guest has virtio built in or found its `viostor` on a
; CD-ROM or floppy (the paths come from the configuration); IDE disks always are; read-only ones
; never. It installs onto the first target (virtio disks first, then IDE), or says there is none
; and waits. Every line it prints comes from the configuration's templates, the words mockstack's
; simulated guest prints, with holes (bytes 1-8) it fills: boot device, target device, its bus,
; driver path, driver medium, disk size, missing hardware, refused disks.
;
; Booted from the disk it installed, the MBR's code prints a login prompt and idles.
;
; Assemble with `nasm -f bin -o boot.bin boot.asm` (nasm 2.16); boot.bin is committed, so
; nothing outside the Rust toolchain is needed to build media.

bits 16
org 0x7c00

IMAGE_SIZE  equ 8192
CFG         equ 0xa000              ; the configuration, 2048 bytes
REFUSALS    equ 0xa800              ; "vdb (virtio): why; ..." built while scanning
MISSING     equ 0xac00              ; "UEFI firmware (...), ..."
SIZE_TEXT   equ 0xae00
SECTOR      equ 0xb000              ; one ISO sector (or floppy sectors) at a time
OWN_PVD     equ 0xb800              ; the boot CD's primary volume descriptor
FAT         equ 0xc000              ; the floppy's first FAT, up to 12 sectors
FLOPPY_BUF  equ 0xd800              ; ISA DMA target: below 64 KiB, no boundary crossed
IDENTIFY    equ 0xe000
DAP         equ 0xe200
REQUEST     equ 0x0600              ; virtio-blk request header, status at +16
QUEUE_SEG   equ 0x1000              ; virtqueue at 1000:0000

; configuration layout (little endian)
CFG_SOURCE  equ CFG + 8             ; 0 built-in, 1 cdrom, 2 floppy, 3 unavailable
CFG_FLAGS   equ CFG + 9             ; 1 unattended, 2 needs UEFI, 4 needs Secure Boot, 8 needs TPM 2.0
CFG_MIN     equ CFG + 12            ; minimum disk size in 512-byte sectors (u64)
CFG_TEXTS   equ CFG + 32            ; u16 offsets of the NUL-terminated templates
T_BANNER    equ 0
T_REFUSED   equ 1
T_WAITING   equ 2
T_NO_DISK   equ 3
T_WHY_NOT_VIRTIO equ 4
T_LOADED    equ 5
T_TOO_SMALL equ 6
T_INSTALLING equ 7
T_COMPLETE  equ 8
T_CDROM_PATH equ 9
T_FLOPPY_PATH equ 10
T_NO_WRITABLE equ 11
T_WRITE_FAILED equ 12
T_LACKS_UEFI equ 13
T_LACKS_SB  equ 14
T_LACKS_TPM equ 15
T_BAD_FLOPPY equ 16
TEXT_COUNT  equ 17

entry:
        jmp 0:start                     ; some BIOSes enter at 07C0:0000

        times 512 - ($ - $$) db 0

; The installed system's MBR, written to sector 0 of the target. It runs at 0000:7C00 too.
mbr:
        cli
        xor ax, ax
        mov ds, ax
        mov ss, ax
        mov sp, 0x7c00
        sti
        cld
        mov si, 0x7c00 + (msg_booted - mbr)
.print:
        lodsb
        test al, al
        jz .idle
        mov ah, al
        mov dx, 0x3fd
.busy:
        in al, dx
        test al, 0x20
        jz .busy
        mov al, ah
        mov dx, 0x3f8
        out dx, al
        jmp .print
.idle:
        hlt
        jmp .idle
msg_booted: db 13, 10, "isoharness tiny guest: booted from the installed disk", 13, 10
            db "isoharness-guest login: ", 0
        times 440 - ($ - mbr) db 0
        dd 0x69736f68                   ; disk signature "hosi"
        dw 0
        ; partition 1: active, Linux (83h), LBA 2048, 2048 sectors until the installer sizes it
        db 0x80, 0x20, 0x21, 0x00, 0x83, 0xfe, 0xff, 0xff
        dd 2048
        dd 2048
        times 510 - ($ - mbr) db 0
        dw 0xaa55

start:
        cli
        xor ax, ax
        mov ds, ax
        mov es, ax
        mov ss, ax
        mov sp, 0x7c00
        sti
        cld
        mov [boot_drive], dl
        mov si, msg_banner
        call print
        call read_config
        jc stop
        call find_boot_cd
        mov word [hole_boot], boot_dev
        mov bx, T_BANNER
        call say

        ; I1: the hardware the guest needs. A BIOS machine has neither UEFI nor Secure Boot.
        mov di, MISSING
        mov byte [di], 0
        test byte [CFG_FLAGS], 2
        jz .no_uefi
        mov bx, T_LACKS_UEFI
        call append_item
.no_uefi:
        test byte [CFG_FLAGS], 4
        jz .no_sb
        mov bx, T_LACKS_SB
        call append_item
.no_sb:
        test byte [CFG_FLAGS], 8
        jz .no_tpm
        call tpm_present
        jnc .no_tpm
        mov bx, T_LACKS_TPM
        call append_item
.no_tpm:
        cmp byte [MISSING], 0
        je .hardware_ok
        mov bx, T_REFUSED
        call say
        jmp halt
.hardware_ok:
        test byte [CFG_FLAGS], 1
        jnz .attended_ok
        mov bx, T_WAITING
        call say
        jmp halt
.attended_ok:
        mov al, [CFG_SOURCE]
        cmp al, 1
        je .find_driver
        cmp al, 2
        jne .targets
.find_driver:
        call find_driver

        ; I3: virtio disks in slot order, then IDE disks; the first usable one is the target.
.targets:
        mov di, REFUSALS
        mov byte [di], 0
        mov byte [virtio_count], 0
        mov ebx, 0x80000000             ; bus 0, device 0, function 0
.next_pci:
        mov eax, ebx
        call pci_read
        cmp eax, 0x10011af4
        jne .pci_step
        call virtio_open
        jc .pci_step
        mov al, [virtio_count]
        inc byte [virtio_count]
        mov di, target_dev
        mov word [di], 'vd'
        add al, 'a'
        mov [di + 2], al
        mov byte [di + 3], 0
        mov dx, [virtio_io]             ; read-only devices (VIRTIO_BLK_F_RO) are no target
        in eax, dx
        test al, 0x20
        jnz .pci_step
        mov al, [CFG_SOURCE]
        test al, al
        jz .virtio_target
        cmp byte [driver_found], 1
        je .virtio_target
        ; refused: "vdX (virtio): why"
        push ebx
        mov di, [refusals_end]
        cmp di, REFUSALS
        je .first_refusal
        mov si, sep_semicolon
        call append
.first_refusal:
        mov si, target_dev
        call append
        mov si, virtio_paren
        call append
        mov bx, T_WHY_NOT_VIRTIO
        call text
        call append
        mov [refusals_end], di
        pop ebx
.pci_step:
        add ebx, 0x100
        cmp ebx, 0x80010000
        jb .next_pci

        mov byte [ide_pos], 0
.next_ide:
        call ide_probe
        cmp al, 1
        jne .ide_step
        mov di, target_dev
        mov word [di], 'hd'
        mov al, [ide_pos]
        add al, 'a'
        mov [di + 2], al
        mov byte [di + 3], 0
        mov word [hole_bus], bus_ide
        ; capacity: LBA48 (words 100-103) when supported, else LBA28 (words 60-61)
        mov eax, [IDENTIFY + 120]
        xor edx, edx
        test byte [IDENTIFY + 167], 0x04
        jz .lba28
        mov eax, [IDENTIFY + 200]
        mov edx, [IDENTIFY + 204]
.lba28:
        mov byte [target_kind], 2
        jmp .chosen
.ide_step:
        inc byte [ide_pos]
        cmp byte [ide_pos], 4
        jb .next_ide

        ; no target: the message, and why
        mov word [hole_refusals], REFUSALS
        cmp byte [REFUSALS], 0
        jne .refused
        mov bx, T_NO_WRITABLE
        call text
        mov [hole_refusals], si
.refused:
        mov bx, T_NO_DISK
        call say
        jmp halt

.virtio_target:
        mov word [hole_bus], bus_virtio
        mov byte [target_kind], 1
        cmp byte [driver_found], 1
        jne .capacity
        mov bx, T_LOADED
        call say
.capacity:
        mov dx, [virtio_io]
        add dx, 0x14
        in eax, dx
        push eax
        add dx, 4
        in eax, dx
        mov edx, eax
        pop eax
.chosen:
        ; I4: big enough?
        mov [capacity], eax
        mov [capacity + 4], edx
        cmp edx, [CFG_MIN + 4]
        ja .big_enough
        jb .too_small
        cmp eax, [CFG_MIN]
        jae .big_enough
.too_small:
        call format_size
        mov bx, T_TOO_SMALL
        call say
        jmp halt
.big_enough:
        call size_partition
        mov bx, T_INSTALLING
        call say
        cmp byte [target_kind], 1
        jne .write_ide
        call virtio_write_mbr
        jmp .written
.write_ide:
        call ata_write_mbr
.written:
        jc .write_failed
        mov bx, T_COMPLETE
        call say
        call linger
        call power_off
        jmp halt
.write_failed:
        mov bx, T_WRITE_FAILED
        call say
        jmp halt

stop:
        call print
halt:
        sti
        hlt
        jmp halt

; ---------------------------------------------------------------------------------------------
; The configuration

; Reads /.isoharness/installer.cfg from the boot CD into CFG. CF and SI = the message on failure.
read_config:
        mov word [read_sector], bios_read
        mov si, cfg_path
        call iso_lookup
        jc .absent
        cmp ecx, 2048
        ja .bad
        cmp ecx, 64
        jb .bad
        call bios_read
        jc .absent
        mov si, SECTOR
        mov di, CFG
        mov cx, 1024
        rep movsw
        cmp dword [CFG], 'ISOH'
        jne .bad
        cmp dword [CFG + 4], 'CFG1'
        jne .bad
        cmp byte [CFG_SOURCE], 3
        ja .unknown
        mov si, CFG_TEXTS               ; every template must end inside the configuration
        mov cx, TEXT_COUNT
.check:
        lodsw
        cmp ax, 64
        jb .bad
        cmp ax, 2048
        jae .bad
        loop .check
        cmp byte [CFG + 2047], 0
        jne .bad
        clc
        ret
.absent:
        mov si, msg_no_config
        stc
        ret
.bad:
        mov si, msg_bad_config
        stc
        ret
.unknown:
        mov si, msg_unknown_fact
        stc
        ret

; BX: template index -> SI: its text.
text:
        shl bx, 1
        mov si, [CFG_TEXTS + bx]
        add si, CFG
        ret

; Prints template BX, filling its holes.
say:
        call text
.next:
        lodsb
        test al, al
        jz .done
        cmp al, 8
        ja .plain
        push si
        movzx bx, al
        shl bx, 1
        mov si, [holes + bx]
        call print
        pop si
        jmp .next
.plain:
        call putc
        jmp .next
.done:
        mov al, 10
        jmp putc

; Appends template BX to the list at DI (", " between items), keeping it NUL-terminated.
append_item:
        cmp di, MISSING
        je .first
        mov si, sep_comma
        call append
.first:
        call text
        ; fall through
; Appends the string SI at DI; DI ends on the NUL.
append:
        lodsb
        stosb
        test al, al
        jnz append
        dec di
        ret

; SIZE_TEXT := the capacity EDX:EAX (sectors) as "N GiB" or "N MiB", as the simulated guest says it.
format_size:
        mov si, unit_gib
        test edx, edx
        jnz .gib
        cmp eax, 1 << 21
        jae .gib
        shr eax, 11
        mov si, unit_mib
        jmp .digits
.gib:
        shrd eax, edx, 21
.digits:
        mov di, SIZE_TEXT + 16
        mov byte [di], 0
        mov ecx, 10
.digit:
        xor edx, edx
        div ecx
        add dl, '0'
        dec di
        mov [di], dl
        test eax, eax
        jnz .digit
        push si
        mov si, di
        mov di, SIZE_TEXT + 32
        mov [hole_size], di
        call append
        pop si
        call append
        ret

; ---------------------------------------------------------------------------------------------
; Devices

; The boot CD's name: the IDE position whose sector 16 equals the one the BIOS reads.
find_boot_cd:
        mov eax, 16
        call bios_read
        jc .done
        mov si, SECTOR
        mov di, OWN_PVD
        mov cx, 1024
        rep movsw
        mov byte [ide_pos], 0
.next:
        call ide_probe
        cmp al, 2
        jne .step
        mov eax, 16
        call atapi_read
        jc .step
        mov si, SECTOR
        mov di, OWN_PVD
        mov cx, 1024
        repe cmpsw
        jne .step
        mov al, [ide_pos]
        add al, 'a'
        mov [boot_dev + 2], al
        ret
.step:
        inc byte [ide_pos]
        cmp byte [ide_pos], 4
        jb .next
.done:
        ret

; Looks for the guest's viostor on every ATAPI CD-ROM, then on the floppy, each with both the
; CD-ROM layout and the floppy layout, as the simulated installer's find_driver does. A `floppy`
; guest reads drivers from the floppy only. Sets driver_found and the driver holes.
find_driver:
        cmp byte [CFG_SOURCE], 2
        je .floppy
        mov byte [ide_pos], 0
.next_cd:
        call ide_probe
        cmp al, 2
        jne .step
        mov word [read_sector], atapi_read
        call try_layouts
        jc .step
        mov al, [ide_pos]
        add al, 'a'
        mov [medium_dev + 2], al
        mov word [medium_dev], 'hd'
        jmp .found
.step:
        inc byte [ide_pos]
        cmp byte [ide_pos], 4
        jb .next_cd
.floppy:
        call floppy_present
        jc .none
        mov byte [fat_not_fat], 0
        call fat_mount
        jc .not_fat
        mov word [read_sector], fat_lookup_adapter
        call try_layouts
        jc .none
        mov word [medium_dev], 'fd'
        mov byte [medium_dev + 2], 'a'
.found:
        mov byte [driver_found], 1
        ret
.not_fat:
        cmp byte [fat_not_fat], 1
        jne .none
        mov bx, T_BAD_FLOPPY
        call say
.none:
        ret

; Tries the CD-ROM layout path, then (with txtsetup.oem) the floppy layout path on the medium
; [read_sector] reads. CF clear when found; hole_driver names the path.
try_layouts:
        mov bx, T_CDROM_PATH
        call text
        cmp byte [si], 0
        je .floppy_layout
        mov [hole_driver], si
        inc si                          ; the paths start with '/'
        call lookup
        jnc .ok
.floppy_layout:
        mov bx, T_FLOPPY_PATH
        call text
        cmp byte [si], 0
        je .no
        mov [hole_driver], si
        mov si, txtsetup
        call lookup
        jc .no
        mov si, [hole_driver]
        inc si
        call lookup
        jnc .ok
.no:
        stc
.ok:
        ret

; Looks SI up on the current medium: ISO 9660 through [read_sector], or FAT.
lookup:
        cmp word [read_sector], fat_lookup_adapter
        je fat_lookup
        jmp iso_lookup

fat_lookup_adapter:
        stc
        ret

; Reads 2048-byte sector EAX of the boot CD into SECTOR through INT 13h extensions.
bios_read:
        pushad
        mov word [DAP], 0x10
        mov word [DAP + 2], 1
        mov word [DAP + 4], SECTOR
        mov word [DAP + 6], 0
        mov [DAP + 8], eax
        mov dword [DAP + 12], 0
        mov si, DAP
        mov dl, [boot_drive]
        mov ah, 0x42
        int 0x13
        popad
        ret

; ---------------------------------------------------------------------------------------------
; ISO 9660

; Looks up the '/'-separated path SI (case-insensitive, primary identifiers) on the volume
; [read_sector] reads. Returns EAX = first sector, ECX = size; CF set when absent.
iso_lookup:
        mov [path_at], si
        mov eax, 16
        call [read_sector]
        jc .fail
        cmp dword [SECTOR], 0x30444301  ; 01 "CD0"
        jne .fail
        mov eax, [SECTOR + 156 + 2]
        mov ecx, [SECTOR + 156 + 10]
.component:
        ; directory EAX, ECX bytes: search it for the component at [path_at]
        mov [dir_lba], eax
        shr ecx, 11
        jz .fail
        cmp ecx, 64
        ja .fail
        mov [dir_sectors], cx
.sector:
        mov eax, [dir_lba]
        call [read_sector]
        jc .fail
        mov bx, SECTOR
.record:
        cmp bx, SECTOR + 2048 - 34
        jae .next_sector
        movzx cx, byte [bx]
        test cx, cx
        jz .next_sector
        cmp cx, 34
        jb .fail
        push bx
        call iso_name_matches
        pop bx
        je .match
        add bx, cx
        jmp .record
.next_sector:
        inc dword [dir_lba]
        dec word [dir_sectors]
        jnz .sector
.fail:
        stc
        ret
.match:
        mov eax, [bx + 2]
        mov [dir_lba], eax
        mov ecx, [bx + 10]
        mov [entry_size], ecx
        mov si, [path_at]
.skip:
        lodsb
        test al, al
        jz .found
        cmp al, '/'
        jne .skip
        mov [path_at], si
        test byte [bx + 25], 2          ; a directory, to go on
        jz .fail
        mov eax, [dir_lba]
        mov ecx, [entry_size]
        jmp .component
.found:
        test byte [bx + 25], 2
        jnz .fail
        mov eax, [dir_lba]
        mov ecx, [entry_size]
        clc
        ret

; ZF set when the record at BX names the component at [path_at]: ";1" and a final "." dropped.
iso_name_matches:
        push cx
        movzx cx, byte [bx + 32]
        lea di, [bx + 33]
        ; the identifier's length without the version and a trailing dot
        xor dx, dx
.len:
        cmp dx, cx
        je .trim
        mov bp, di
        add bp, dx
        cmp byte [bp], ';'
        je .trim
        inc dx
        jmp .len
.trim:
        test dx, dx
        jz .no
        mov bp, di
        add bp, dx
        cmp byte [bp - 1], '.'
        jne .compare
        dec dx
.compare:
        mov si, [path_at]
        mov cx, dx
.char:
        lodsb
        call upper
        mov ah, al
        mov al, [di]
        call upper
        cmp al, ah
        jne .no
        inc di
        loop .char
        lodsb                           ; the component must end here
        test al, al
        jz .yes
        cmp al, '/'
        je .yes
.no:
        or sp, sp                       ; ZF clear (SP is never 0)
        pop cx
        ret
.yes:
        xor ax, ax                      ; ZF set
        pop cx
        ret

upper:
        cmp al, 'a'
        jb .done
        cmp al, 'z'
        ja .done
        sub al, 0x20
.done:
        ret

; ---------------------------------------------------------------------------------------------
; IDE (PIIX, legacy ports), polled with interrupts off at the device

; [ide_pos] -> DX = command block base, BX = control port, AL = drive select bits.
ide_ports:
        mov dx, 0x1f0
        mov bx, 0x3f6
        test byte [ide_pos], 2
        jz .primary
        mov dx, 0x170
        mov bx, 0x376
.primary:
        mov al, 0xa0
        test byte [ide_pos], 1
        jz .master
        mov al, 0xb0
.master:
        ret

; Selects the device at [ide_pos]; DX = base. Status in AL.
ide_select:
        call ide_ports
        push dx
        push ax
        mov dx, bx
        mov al, 0x02                    ; nIEN: no interrupts
        out dx, al
        pop ax
        pop dx
        add dx, 6
        out dx, al
        sub dx, 6
        call ide_delay
        push dx
        add dx, 7
        in al, dx
        pop dx
        ret

ide_delay:
        push dx
        push cx
        mov dx, bx
        mov cx, 5
.read:
        in al, dx
        loop .read
        pop cx
        pop dx
        ret

; Waits until BSY clears; AL = status; CF on timeout. DX = base.
ide_wait:
        push ecx
        push dx
        add dx, 7
        mov ecx, 0x400000
.poll:
        in al, dx
        test al, 0x80
        jz .ready
        dec ecx
        jnz .poll
        pop dx
        pop ecx
        stc
        ret
.ready:
        pop dx
        pop ecx
        clc
        ret

; AL := 0 nothing, 1 ATA disk (IDENTIFY in its buffer), 2 ATAPI device, at [ide_pos].
ide_probe:
        call ide_select
        push dx                         ; present when LBA low keeps what is written to it
        add dx, 3
        mov al, 0x55
        out dx, al
        in al, dx
        pop dx
        cmp al, 0x55
        jne .none
        push dx
        add dx, 2
        xor al, al
        out dx, al                      ; sector count, LBA low/mid/high: 0
        inc dx
        out dx, al
        inc dx
        out dx, al
        inc dx
        out dx, al
        add dx, 2
        mov al, 0xec                    ; IDENTIFY DEVICE
        out dx, al
        pop dx
        call ide_wait
        jc .none
        test al, al
        jz .none
        push dx
        add dx, 4
        in al, dx
        mov ah, al
        inc dx
        in al, dx
        pop dx
        cmp ax, 0x14eb                  ; the packet device signature
        je .atapi
        push dx
        add dx, 7
        in al, dx
        pop dx
        test al, 0x01
        jnz .none
        test al, 0x08
        jz .none
        mov di, IDENTIFY
        mov cx, 256
        rep insw
        mov al, 1
        ret
.atapi:
        mov al, 2
        ret
.none:
        xor al, al
        ret

; Reads 2048-byte sector EAX of the ATAPI device at [ide_pos] into SECTOR; CF on failure.
; Retries, since a fresh medium reports UNIT ATTENTION once.
atapi_read:
        pushad
        mov [packet + 2], eax
        ; READ(10) takes a big-endian LBA
        mov ax, [packet + 2]
        mov bx, [packet + 4]
        xchg ah, al
        xchg bh, bl
        mov [packet + 2], bx
        mov [packet + 4], ax
        mov bp, 4
.try:
        call ide_select
        call ide_wait
        jc .retry
        push dx
        inc dx
        xor al, al
        out dx, al                      ; features: PIO
        add dx, 3
        out dx, al                      ; byte count low
        inc dx
        mov al, 0x08
        out dx, al                      ; byte count high: 2048
        add dx, 2
        mov al, 0xa0                    ; PACKET
        out dx, al
        pop dx
        call ide_wait
        jc .retry
        test al, 0x01
        jnz .retry
        test al, 0x08
        jz .retry
        mov si, packet
        mov cx, 6
        rep outsw
        call ide_wait
        jc .retry
        test al, 0x01
        jnz .retry
        test al, 0x08
        jz .retry
        push dx
        add dx, 4
        in al, dx
        mov cl, al
        inc dx
        in al, dx
        mov ch, al
        pop dx
        cmp cx, 2048
        jne .retry
        mov di, SECTOR
        shr cx, 1
        rep insw
        call ide_wait
        jc .retry
        test al, 0x01
        jnz .retry
        popad
        clc
        ret
.retry:
        dec bp
        jnz .try
        popad
        stc
        ret

; Writes the MBR to sector 0 of the ATA disk at [ide_pos]; CF on failure.
ata_write_mbr:
        call ide_select
        call ide_wait
        jc .fail
        push dx
        add dx, 2
        mov al, 1
        out dx, al                      ; one sector
        xor al, al
        inc dx
        out dx, al                      ; LBA 0
        inc dx
        out dx, al
        inc dx
        out dx, al
        inc dx
        mov al, 0xe0                    ; LBA mode, drive select
        test byte [ide_pos], 1
        jz .master
        mov al, 0xf0
.master:
        out dx, al
        inc dx
        mov al, 0x30                    ; WRITE SECTORS
        out dx, al
        pop dx
        call ide_wait
        jc .fail
        test al, 0x01
        jnz .fail
        test al, 0x08
        jz .fail
        mov si, mbr
        mov cx, 256
        rep outsw
        call ide_wait
        jc .fail
        test al, 0x21                   ; ERR or device fault
        jnz .fail
        push dx
        add dx, 7
        mov al, 0xe7                    ; FLUSH CACHE
        out dx, al
        pop dx
        call ide_wait
        jc .fail
        test al, 0x21
        jnz .fail
        clc
        ret
.fail:
        stc
        ret

; ---------------------------------------------------------------------------------------------
; Floppy (FDC at 3F0h, drive A, ISA DMA channel 2; IRQ 6 noted by the BIOS in 0040:003E bit 7)

; CF clear when CMOS says drive A exists.
floppy_present:
        mov al, 0x10
        out 0x70, al
        in al, 0x71
        test al, 0xf0
        jnz .yes
        stc
        ret
.yes:
        clc
        ret

fdc_out:
        push cx
        push ax
        mov dx, 0x3f4
        mov cx, 0xffff
.wait:
        in al, dx
        and al, 0xc0
        cmp al, 0x80
        je .ready
        loop .wait
        pop ax
        pop cx
        stc
        ret
.ready:
        pop ax
        mov dx, 0x3f5
        out dx, al
        pop cx
        clc
        ret

fdc_in:
        push cx
        mov dx, 0x3f4
        mov cx, 0xffff
.wait:
        in al, dx
        and al, 0xc0
        cmp al, 0xc0
        je .ready
        loop .wait
        pop cx
        stc
        ret
.ready:
        mov dx, 0x3f5
        in al, dx
        pop cx
        clc
        ret

; Waits (at most about three seconds of timer ticks) for the FDC's interrupt; CF on timeout.
fdc_wait_irq:
        push cx
        mov cx, 60
        sti
.wait:
        test byte [0x43e], 0x80
        jnz .done
        hlt
        loop .wait
        pop cx
        stc
        ret
.done:
        and byte [0x43e], 0x7f
        pop cx
        clc
        ret

; SENSE INTERRUPT STATUS: AL = ST0.
fdc_sense:
        mov al, 0x08
        call fdc_out
        call fdc_in
        push ax
        call fdc_in
        pop ax
        ret

; Resets the controller, reads the boot sector and checks the BPB; CF when the medium holds no
; FAT12 volume this installer can read.
fat_mount:
        and byte [0x43e], 0x7f
        mov dx, 0x3f2
        xor al, al
        out dx, al
        mov cx, 100
.delay:
        in al, 0x80
        loop .delay
        mov al, 0x1c                    ; motor A, DMA and IRQ on, out of reset, drive 0
        out dx, al
        call fdc_wait_irq
        jc .fail
        mov cx, 4
.sense:
        call fdc_sense
        loop .sense
        ; the boot sector, at each data rate a 3.5" drive has (500 kbit/s, 1 Mbit/s, 250 kbit/s):
        ; QEMU, like a real controller, reads a medium only at its own rate
        mov byte [fat_spt], 18
        mov byte [fat_heads], 2
        mov si, fdc_rates
.rate:
        lodsb
        cmp al, 0xff
        je .no_medium
        mov [fdc_rate], al
        push si
        call fdc_setup
        pop si
        jc .rate
        xor eax, eax
        push si
        call floppy_read
        pop si
        jc .rate
        mov byte [fat_not_fat], 1
        mov al, [FLOPPY_BUF]
        cmp al, 0xeb
        je .jump_ok
        cmp al, 0xe9
        jne .fail
.jump_ok:
        cmp word [FLOPPY_BUF + 0x0b], 512
        jne .fail
        mov al, [FLOPPY_BUF + 0x0d]     ; sectors per cluster: 1, 2, 4 or 8
        test al, al
        jz .fail
        cmp al, 8
        ja .fail
        mov [fat_spc], al
        mov ax, [FLOPPY_BUF + 0x0e]     ; reserved sectors
        test ax, ax
        jz .fail
        mov [fat_start], ax
        mov al, [FLOPPY_BUF + 0x10]     ; FATs
        test al, al
        jz .fail
        cmp al, 2
        ja .fail
        mov [fat_count], al
        mov ax, [FLOPPY_BUF + 0x11]     ; root entries
        test ax, ax
        jz .fail
        cmp ax, 512
        ja .fail
        test ax, 15
        jnz .fail
        shr ax, 4
        mov [root_sectors], ax
        mov ax, [FLOPPY_BUF + 0x16]     ; sectors per FAT
        test ax, ax
        jz .fail
        cmp ax, 12
        ja .fail
        mov [fat_size], ax
        mov ax, [FLOPPY_BUF + 0x18]
        test ax, ax
        jz .fail
        cmp ax, 63
        ja .fail
        mov [fat_spt], al
        mov ax, [FLOPPY_BUF + 0x1a]
        test ax, ax
        jz .fail
        cmp ax, 2
        ja .fail
        mov [fat_heads], al
        ; the FAT, then where the root directory and the data start
        mov cx, [fat_size]
        mov di, FAT
        movzx eax, word [fat_start]
.fat_sector:
        call floppy_read
        jc .fail
        push cx
        mov si, FLOPPY_BUF
        mov cx, 256
        rep movsw
        pop cx
        inc eax
        loop .fat_sector
        movzx ax, byte [fat_count]
        mul word [fat_size]
        add ax, [fat_start]
        mov [root_start], ax
        add ax, [root_sectors]
        mov [data_start], ax
        clc
        ret
.no_medium:
        mov byte [fat_not_fat], 0
.fail:
        stc
        ret

; Data rate, SPECIFY, RECALIBRATE.
fdc_setup:
        mov dx, 0x3f7
        mov al, [fdc_rate]
        out dx, al
        mov al, 0x03
        call fdc_out
        mov al, 0xdf
        call fdc_out
        mov al, 0x02
        call fdc_out
        and byte [0x43e], 0x7f
        mov al, 0x07
        call fdc_out
        xor al, al
        call fdc_out
        call fdc_wait_irq
        jc .fail
        call fdc_sense
        clc
.fail:
        ret

; Reads floppy sector EAX (LBA) into FLOPPY_BUF; CF on failure. Keeps every register.
floppy_read:
        pushad
        mov [floppy_lba], eax
        mov bp, 3
.try:
        mov eax, [floppy_lba]
        movzx ecx, byte [fat_spt]
        xor edx, edx
        div ecx
        inc dl
        mov [chs_sector], dl
        movzx ecx, byte [fat_heads]
        xor edx, edx
        div ecx
        mov [chs_head], dl
        mov [chs_cyl], al
        ; SEEK
        and byte [0x43e], 0x7f
        mov al, 0x0f
        call fdc_out
        mov al, [chs_head]
        shl al, 2
        call fdc_out
        mov al, [chs_cyl]
        call fdc_out
        call fdc_wait_irq
        jc .retry
        call fdc_sense
        ; DMA channel 2: one 512-byte block, device to memory, at FLOPPY_BUF
        mov al, 0x06
        out 0x0a, al
        out 0x0c, al
        mov al, 0x46
        out 0x0b, al
        mov al, FLOPPY_BUF & 0xff
        out 0x04, al
        mov al, (FLOPPY_BUF >> 8) & 0xff
        out 0x04, al
        xor al, al
        out 0x81, al
        out 0x0c, al
        mov al, 0xff
        out 0x05, al
        mov al, 0x01
        out 0x05, al
        mov al, 0x02
        out 0x0a, al
        ; READ DATA (MFM): head/drive, C, H, R, N=2, EOT=R, GPL, DTL
        and byte [0x43e], 0x7f
        mov al, 0x46
        call fdc_out
        mov al, [chs_head]
        shl al, 2
        call fdc_out
        mov al, [chs_cyl]
        call fdc_out
        mov al, [chs_head]
        call fdc_out
        mov al, [chs_sector]
        call fdc_out
        mov al, 2
        call fdc_out
        mov al, [chs_sector]
        call fdc_out
        mov al, 0x1b
        call fdc_out
        mov al, 0xff
        call fdc_out
        call fdc_wait_irq
        jc .retry
        call fdc_in
        jc .retry
        mov bl, al                      ; ST0
        mov cx, 6
.results:
        call fdc_in
        loop .results
        test bl, 0xc0
        jnz .retry
        popad
        clc
        ret
.retry:
        dec bp
        jnz .try
        popad
        stc
        ret

; Looks the '/'-separated path SI up on the mounted FAT12 volume; CF when absent.
fat_lookup:
        mov [path_at], si
        mov word [dir_cluster], 0       ; 0: the root directory
.component:
        call fat_short_name
        jc .fail
        mov word [dir_sector_index], 0
.sector:
        call fat_dir_sector
        jc .fail
        call floppy_read
        jc .fail
        mov bx, FLOPPY_BUF
.entry:
        mov al, [bx]
        test al, al
        jz .fail                        ; the end of the directory
        cmp al, 0xe5
        je .skip
        test byte [bx + 11], 0x08       ; volume labels and long-name entries
        jnz .skip
        mov si, short_name
        mov di, bx
        mov cx, 11
        repe cmpsb
        je .match
.skip:
        add bx, 32
        cmp bx, FLOPPY_BUF + 512
        jb .entry
        inc word [dir_sector_index]
        jmp .sector
.match:
        mov ax, [bx + 26]
        mov [entry_cluster], ax
        mov dl, [bx + 11]
        mov si, [path_at]
.to_next:
        lodsb
        test al, al
        jz .found
        cmp al, '/'
        jne .to_next
        mov [path_at], si
        test dl, 0x10
        jz .fail
        mov ax, [entry_cluster]
        cmp ax, 2
        jb .fail
        mov [dir_cluster], ax
        jmp .component
.found:
        test dl, 0x10
        jnz .fail
        clc
        ret
.fail:
        stc
        ret

; EAX := the LBA of sector [dir_sector_index] of the directory [dir_cluster]; CF past its end.
fat_dir_sector:
        movzx eax, word [dir_sector_index]
        cmp word [dir_cluster], 0
        jne .chain
        cmp ax, [root_sectors]
        jae .end
        add ax, [root_start]
        clc
        ret
.chain:
        cmp ax, 256                     ; a bound on any directory this installer reads
        jae .end
        movzx cx, byte [fat_spc]
        xor dx, dx
        div cx                          ; AX = clusters to follow, DX = sector within
        mov bx, [dir_cluster]
        mov cx, ax
        jcxz .here
.follow:
        call fat12_next
        cmp bx, 2
        jb .end
        cmp bx, 0xff8
        jae .end
        loop .follow
.here:
        movzx eax, bx
        sub eax, 2
        movzx ecx, byte [fat_spc]
        push dx
        mul ecx
        pop dx
        movzx edx, dx
        add eax, edx
        movzx ecx, word [data_start]
        add eax, ecx
        clc
        ret
.end:
        stc
        ret

; BX := the FAT12 entry of cluster BX.
fat12_next:
        push si
        mov si, bx
        shr si, 1
        add si, bx                      ; 1.5 bytes per entry
        cmp si, 12 * 512 - 2
        jae .bad
        mov si, [FAT + si]
        test bx, 1
        jz .even
        shr si, 4
        jmp .done
.even:
        and si, 0x0fff
.done:
        mov bx, si
        pop si
        ret
.bad:
        mov bx, 0xfff
        pop si
        ret

; short_name := the component at [path_at] as an 8.3 directory name; CF when it cannot be one.
fat_short_name:
        mov di, short_name
        mov cx, 11
        mov al, ' '
        rep stosb
        mov si, [path_at]
        mov di, short_name
        mov cx, 8
.base:
        lodsb
        test al, al
        jz .done
        cmp al, '/'
        je .done
        cmp al, '.'
        je .extension
        jcxz .fail
        call upper
        stosb
        dec cx
        jmp .base
.extension:
        mov di, short_name + 8
        mov cx, 3
.ext:
        lodsb
        test al, al
        jz .done
        cmp al, '/'
        je .done
        jcxz .fail
        call upper
        stosb
        dec cx
        jmp .ext
.done:
        clc
        ret
.fail:
        stc
        ret

; ---------------------------------------------------------------------------------------------
; virtio-blk (legacy interface)

; PCI configuration space, mechanism 1: EAX = address; returns the dword in EAX.
pci_read:
        push dx
        mov dx, 0xcf8
        out dx, eax
        mov dx, 0xcfc
        in eax, dx
        pop dx
        ret

; The device at EBX: [virtio_io] := its I/O base, I/O decoding and bus mastering on. CF when its
; BAR0 is not an I/O BAR.
virtio_open:
        lea eax, [ebx + 0x10]
        call pci_read
        test al, 1
        jz .no
        and ax, 0xfffc
        mov [virtio_io], ax
        lea eax, [ebx + 0x04]
        call pci_read
        or ax, 0x0005
        push ax
        lea eax, [ebx + 0x04]
        mov dx, 0xcf8
        out dx, eax
        pop ax
        mov dx, 0xcfc
        out dx, ax
        clc
        ret
.no:
        stc
        ret

; EDX:EAX: the disk's size in sectors; the partition spans it from sector 2048.
size_partition:
        test edx, edx
        jz .low
        mov eax, 0xffffffff
.low:
        sub eax, 2048
        jbe .keep
        mov [mbr + 446 + 12], eax
.keep:
        ret

; Writes the MBR to sector 0 of the device at [virtio_io] through virtqueue 0. CF on failure.
virtio_write_mbr:
        mov bx, [virtio_io]
        lea dx, [bx + 0x12]             ; device status: reset, then ACKNOWLEDGE | DRIVER
        xor al, al
        out dx, al
        mov al, 3
        out dx, al
        lea dx, [bx + 0x04]             ; no optional features
        xor eax, eax
        out dx, eax
        lea dx, [bx + 0x0e]             ; queue 0
        xor ax, ax
        out dx, ax
        lea dx, [bx + 0x0c]
        in ax, dx
        test ax, ax
        jz .fail
        cmp ax, 1024
        ja .fail
        mov [queue_size], ax
        ; Zero the rings: descriptors 16n, available 6 + 2n, then the used ring on the next page.
        push es
        mov cx, QUEUE_SEG
        mov es, cx
        xor di, di
        xor ax, ax
        mov cx, 0x4000                  ; 32 KiB
        rep stosw
        ; descriptor 0: header (device reads), 1: the MBR (device reads), 2: status (device writes)
        xor di, di
        mov dword [es:di + 0], REQUEST
        mov dword [es:di + 4], 0
        mov dword [es:di + 8], 16
        mov word [es:di + 12], 1        ; NEXT
        mov word [es:di + 14], 1
        mov dword [es:di + 16], mbr
        mov dword [es:di + 20], 0
        mov dword [es:di + 24], 512
        mov word [es:di + 28], 1        ; NEXT
        mov word [es:di + 30], 2
        mov dword [es:di + 32], REQUEST + 16
        mov dword [es:di + 36], 0
        mov dword [es:di + 40], 1
        mov word [es:di + 44], 2        ; WRITE
        mov word [es:di + 46], 0
        ; the available ring: one entry, descriptor 0
        mov ax, [queue_size]
        shl ax, 4
        mov si, ax                      ; available ring offset
        mov word [es:si + 4], 0
        mov word [es:si + 2], 1
        ; the used ring: after the available ring, 4096-aligned
        mov ax, [queue_size]
        shl ax, 1
        add ax, 6
        add ax, si
        add ax, 0x0fff
        and ax, 0xf000
        mov [used_ring], ax
        pop es
        ; the request: VIRTIO_BLK_T_OUT to sector 0, status 0xff until the device answers
        mov dword [REQUEST + 0], 1
        mov dword [REQUEST + 4], 0
        mov dword [REQUEST + 8], 0
        mov dword [REQUEST + 12], 0
        mov byte [REQUEST + 16], 0xff
        mov bx, [virtio_io]
        lea dx, [bx + 0x08]             ; queue address, as a page number
        mov eax, QUEUE_SEG >> 8
        out dx, eax
        lea dx, [bx + 0x12]             ; DRIVER_OK
        mov al, 7
        out dx, al
        lea dx, [bx + 0x10]             ; notify queue 0
        xor ax, ax
        out dx, ax
        push es
        mov cx, QUEUE_SEG
        mov es, cx
        mov si, [used_ring]
        mov ecx, 0x10000000             ; a bound on the wait, not a clock
.wait:
        cmp word [es:si + 2], 0
        jne .answered
        pause
        dec ecx
        jnz .wait
        pop es
        jmp .fail
.answered:
        pop es
        cmp byte [REQUEST + 16], 0      ; VIRTIO_BLK_S_OK
        jne .fail
        clc
        ret
.fail:
        stc
        ret

; ---------------------------------------------------------------------------------------------
; Firmware services

; CF clear when the BIOS's TCG interface answers (INT 1Ah, AX=BB00h: a TPM is present).
tpm_present:
        mov eax, 0xbb00
        xor ebx, ebx
        int 0x1a
        jc .no
        test eax, eax
        jnz .no
        cmp ebx, 0x41504354             ; "TCPA"
        jne .no
        clc
        ret
.no:
        stc
        ret

; Waits about ten seconds (182 ticks of the BIOS's 18.2 Hz clock) before the power-off: a libvirt host serves the
; console only while the guest runs, and a reader polling it must get to see the lines.
linger:
        sti
        mov ecx, [0x46c]
        add ecx, 182
.wait:
        hlt
        mov eax, [0x46c]
        sub eax, ecx
        js .wait
        ret

; ACPI soft-off: SLP_EN with sleep type 0 into PM1a_CNT (PMBASE + 4). PMBASE is register 40h of
; the ICH9 LPC bridge (q35, 00:1f.0) or of the PIIX4 power management function (pc, 00:01.3).
power_off:
        mov eax, 0x8000f840
        call .try
        mov eax, 0x80000b40
.try:
        mov dx, 0xcf8
        out dx, eax
        mov dx, 0xcfc
        in eax, dx
        and ax, 0xff80
        jz .absent
        cmp ax, 0xff80
        je .absent
        add ax, 4
        mov dx, ax
        mov ax, 0x2000
        out dx, ax
.absent:
        ret

; Prints the string SI to COM1 ('\n' as CR LF).
print:
        lodsb
        test al, al
        jz .done
        call putc
        jmp print
.done:
        ret

putc:
        push dx
        push ax
        cmp al, 10
        jne .raw
        mov al, 13
        call .out
        mov al, 10
.raw:
        call .out
        pop ax
        pop dx
        ret
.out:
        mov ah, al
        mov dx, 0x3fd
.busy:
        in al, dx
        test al, 0x20
        jz .busy
        mov al, ah
        mov dx, 0x3f8
        out dx, al
        ret

; ---------------------------------------------------------------------------------------------
; Data

msg_banner:       db 10, "isoharness tiny installer", 10, 0
msg_no_config:    db "isoharness tiny installer: no /.isoharness/installer.cfg on the boot medium; cannot install", 10, 0
msg_bad_config:   db "isoharness tiny installer: /.isoharness/installer.cfg is not a configuration this installer reads; cannot install", 10, 0
msg_unknown_fact: db "isoharness tiny installer: the guest facts name a virtio driver source this installer cannot act on; cannot install", 10, 0
cfg_path:         db "_isoharness/installer.cfg", 0
txtsetup:         db "txtsetup.oem", 0
sep_comma:        db ", ", 0
sep_semicolon:    db "; ", 0
virtio_paren:     db " (virtio): ", 0
bus_virtio:       db "virtio", 0
bus_ide:          db "ide", 0
unit_gib:         db " GiB", 0
unit_mib:         db " MiB", 0
boot_dev:         db "hd?", 0
target_dev:       db "vda", 0
medium_dev:       db "hda", 0
packet:           db 0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0

; the holes a template's bytes 1-8 stand for
holes:            dw 0
hole_boot:        dw boot_dev
hole_target:      dw target_dev
hole_bus:         dw bus_virtio
hole_driver:      dw 0
hole_medium:      dw medium_dev
hole_size:        dw SIZE_TEXT
hole_missing:     dw MISSING
hole_refusals:    dw REFUSALS

refusals_end:     dw REFUSALS
boot_drive:       db 0
driver_found:     db 0
virtio_count:     db 0
target_kind:      db 0
ide_pos:          db 0
read_sector:      dw 0
path_at:          dw 0
dir_lba:          dd 0
dir_sectors:      dw 0
entry_size:       dd 0
capacity:         dd 0, 0
virtio_io:        dw 0
queue_size:       dw 0
used_ring:        dw 0
fdc_rate:         db 0
fdc_rates:        db 0, 3, 2, 0xff
fat_not_fat:      db 0
fat_spt:          db 18
fat_heads:        db 2
fat_spc:          db 1
fat_count:        db 2
fat_start:        dw 1
fat_size:         dw 9
root_sectors:     dw 14
root_start:       dw 19
data_start:       dw 33
dir_cluster:      dw 0
entry_cluster:    dw 0
dir_sector_index: dw 0
floppy_lba:       dd 0
chs_cyl:          db 0
chs_head:         db 0
chs_sector:       db 1
short_name:       times 11 db ' '

        times IMAGE_SIZE - ($ - $$) db 0

; The tiny installer: a real El Torito (no-emulation) boot image for BIOS machines.
;
; Booted from a CD-ROM it behaves like an OS installer reduced to its essentials: it announces
; itself on the serial port (COM1, which Nova logs as the console), looks for a hard disk, writes
; an installed system onto it (the MBR below: boot code, one Linux partition spanning the disk,
; boot signature) and powers the machine off through ACPI. With no hard disk it says so, as real
; installers do, and waits.
;
; Like a real installer it does not depend on the firmware to see the disks: the first disk the
; BIOS knows (drive 80h) if there is one, otherwise the first virtio-blk device on PCI bus 0,
; driven directly through its legacy (transitional) I/O interface. libvirt starts QEMU with
; `-boot strict=on`, so SeaBIOS maps only the devices in the boot order to drive numbers, and
; Nova's ephemeral disk is not among them.
;
; Booted from the disk it installed, the MBR's code announces the installed system with a login
; prompt and waits, like a booted OS.
;
; Assemble with `nasm -f bin -o boot.bin boot.asm` (nasm 2.16); boot.bin is committed, so
; nothing outside the Rust toolchain is needed to build media.

bits 16
org 0x7c00

installer:
        cli
        xor ax, ax
        mov ds, ax
        mov es, ax
        mov ss, ax
        mov sp, 0x7c00
        jmp 0:.normalized               ; some BIOSes enter at 07C0:0000
.normalized:
        sti
        cld
        mov si, msg_banner
        call serial_print
        mov ah, 0x08                    ; get drive parameters: DL = number of hard disks
        mov dl, 0x80
        xor di, di
        int 0x13
        jc .virtio
        test dl, dl
        jz .virtio
        mov si, msg_installing
        call serial_print
        ; The partition spans the disk from sector 2048, as the extended parameters give it.
        mov word [drive_params], 0x1a
        mov ah, 0x48
        mov dl, 0x80
        mov si, drive_params
        int 0x13
        jc .write
        mov eax, [drive_params + 0x10]  ; total sectors (low 32 bits)
        mov edx, [drive_params + 0x14]
        call size_partition
.write:
        mov ax, 0x0301                  ; write 1 sector
        mov cx, 0x0001                  ; cylinder 0, sector 1
        mov dx, 0x0080                  ; head 0, drive 80h
        mov bx, mbr
        int 0x13
        jc .write_failed
.installed:
        mov si, msg_done
        call serial_print
        call power_off
        jmp halt
.virtio:
        call virtio_find
        jc .no_disk
        mov si, msg_installing_virtio
        call serial_print
        call virtio_write_mbr
        jc .write_failed
        jmp .installed
.write_failed:
        mov si, msg_write_failed
        call serial_print
        jmp halt
.no_disk:
        mov si, msg_no_disk
        call serial_print
        jmp halt

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

; PCI configuration space, mechanism 1: EAX = address; returns the dword in EAX.
pci_read:
        mov dx, 0xcf8
        out dx, eax
        mov dx, 0xcfc
        in eax, dx
        ret

; Finds a legacy virtio-blk device (1AF4:1001) on bus 0; CF set when there is none. Leaves its
; I/O base in [virtio_io] and I/O decoding and bus mastering enabled.
virtio_find:
        mov ebx, 0x80000000             ; bus 0, device 0, function 0, register 0
.next:
        mov eax, ebx
        call pci_read
        cmp eax, 0x10011af4
        je .found
        add ebx, 0x800                  ; next device
        cmp ebx, 0x80010000
        jb .next
        stc
        ret
.found:
        lea eax, [ebx + 0x10]           ; BAR0: the legacy I/O registers
        call pci_read
        test al, 1
        jz .not_io
        and ax, 0xfffc
        mov [virtio_io], ax
        lea eax, [ebx + 0x04]           ; command register: I/O space and bus master on
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
.not_io:
        stc
        ret

; Writes the MBR to sector 0 through virtqueue 0 (legacy layout) at 1000:0000. CF set on failure.
QUEUE_SEG equ 0x1000
REQUEST   equ 0x9000                    ; the request header, then the status byte at +16
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
        lea dx, [bx + 0x14]             ; capacity in sectors, from the device's configuration
        in eax, dx
        push eax
        lea dx, [bx + 0x18]
        in eax, dx
        mov edx, eax
        pop eax
        call size_partition
        mov bx, [virtio_io]
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

halt:
        hlt
        jmp halt

; DS:SI: a zero-terminated string, to COM1.
serial_print:
        lodsb
        test al, al
        jz .done
        mov ah, al
        mov dx, 0x3fd
.busy:
        in al, dx
        test al, 0x20
        jz .busy
        mov al, ah
        mov dx, 0x3f8
        out dx, al
        jmp serial_print
.done:
        ret

msg_banner:       db 13, 10, "isoharness tiny installer", 13, 10, "Starting installer", 13, 10, 0
msg_installing:   db "Installing to the first hard disk (BIOS drive 80h)", 13, 10, 0
msg_installing_virtio: db "Installing to the first virtio disk", 13, 10, 0
msg_done:         db "Installation complete: powering off", 13, 10, 0
msg_write_failed: db "Installation failed: the disk refused the write", 13, 10, 0
msg_no_disk:      db "No disks found: the installer needs a hard disk to install to", 13, 10, 0

virtio_io:  dw 0
queue_size: dw 0
used_ring:  dw 0

        times 1024 - ($ - $$) db 0

; The installed system's MBR, written to sector 0 of the disk. It runs at 0000:7C00 too.
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

drive_params:
        times 2048 - ($ - $$) db 0

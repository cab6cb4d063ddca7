; The tiny installer: a real El Torito (no-emulation) boot image for BIOS machines.
;
; Booted from a CD-ROM it behaves like an OS installer reduced to its essentials: it announces
; itself on the serial port (COM1, which Nova logs as the console), looks for the first hard
; disk the BIOS knows (drive 80h), writes an installed system onto it (the MBR below: boot code,
; one Linux partition spanning the disk, boot signature) and powers the machine off through
; ACPI. With no hard disk it says so, as real installers do, and waits.
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
        jc .no_disk
        test dl, dl
        jz .no_disk
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
        cmp dword [drive_params + 0x14], 0
        je .size
        mov eax, 0xffffffff
.size:
        sub eax, 2048
        jbe .write
        mov [mbr + 446 + 12], eax
.write:
        mov ax, 0x0301                  ; write 1 sector
        mov cx, 0x0001                  ; cylinder 0, sector 1
        mov dx, 0x0080                  ; head 0, drive 80h
        mov bx, mbr
        int 0x13
        jc .write_failed
        mov si, msg_done
        call serial_print
        call power_off
        jmp halt
.write_failed:
        mov si, msg_write_failed
        call serial_print
        jmp halt
.no_disk:
        mov si, msg_no_disk
        call serial_print
        jmp halt

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
msg_done:         db "Installation complete: powering off", 13, 10, 0
msg_write_failed: db "Installation failed: the disk refused the write", 13, 10, 0
msg_no_disk:      db "No disks found: the installer needs a hard disk to install to", 13, 10, 0

        times 510 - ($ - $$) db 0
        dw 0xaa55

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

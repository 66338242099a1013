//! The shim's program: a static executable without a C library (`-nostartfiles -nostdlib
//! -static`), so a running one is a few pages of memory. runtime-oci's build script compiles
//! it with `panic = "abort"`; see `monitor.rs` for what it does, and `pause.rs` for its
//! `pause` mode, which holds a Pod's namespaces.
#![no_std]
#![no_main]
// The memory functions below must stay loops, not become calls to themselves.
#![no_builtins]
#![allow(unsafe_code)]

mod log;
mod monitor;
mod pause;
mod sys;
mod text;

use core::ffi::CStr;

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    sys::exit(101)
}

// The kernel starts the process with argc, the argument pointers, a null, the environment
// pointers and a null on the stack.
core::arch::global_asm!(
    ".globl _start",
    "_start:",
    "xor rbp, rbp",
    "mov rdi, rsp",
    "and rsp, -16",
    "call {entry}",
    "ud2",
    entry = sym entry,
);

/// # Safety
/// Called once, by `_start`, with the stack the kernel set up.
unsafe extern "C" fn entry(stack: *const usize) -> ! {
    // SAFETY: the layout above is the kernel's promise for a new process.
    let (argc, argv) = unsafe { (*stack, stack.add(1) as *const *const u8) };
    let envp = unsafe { argv.add(argc + 1) };
    let mut args: [&CStr; 16] = [c""; 16];
    let count = argc.saturating_sub(1).min(args.len());
    for (i, slot) in args[..count].iter_mut().enumerate() {
        // SAFETY: each argument is a NUL-terminated string the kernel copied in.
        *slot = unsafe { cstr(*argv.add(i + 1)) };
    }
    let args = &args[..count];
    if let [mode, rest @ ..] = args
        && mode.to_bytes() == b"pause"
    {
        sys::exit(pause::main(rest));
    }
    // SAFETY: `envp` is the environment the kernel gave this process.
    sys::exit(unsafe { monitor::main(args, envp) })
}

/// # Safety
/// `p` points at a NUL-terminated string that lives as long as the process.
unsafe fn cstr(p: *const u8) -> &'static CStr {
    let mut len = 0;
    // SAFETY: the string ends with a NUL, so every byte up to it can be read.
    while unsafe { *p.add(len) } != 0 {
        len += 1;
    }
    // SAFETY: `len` bytes and the NUL after them are the string.
    unsafe { CStr::from_bytes_with_nul_unchecked(core::slice::from_raw_parts(p, len + 1)) }
}

// The compiler calls these for copies and comparisons; without a C library, they are here.

#[unsafe(no_mangle)]
unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the compiler calls this with valid, non-overlapping regions of `n` bytes.
    unsafe { memmove(dst, src, n) }
}

#[unsafe(no_mangle)]
unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the compiler calls this with valid regions of `n` bytes; copying down from the
    // start (or up from the end) is right when they overlap.
    unsafe {
        if (dst as usize) < (src as usize) {
            for i in 0..n {
                *dst.add(i) = *src.add(i);
            }
        } else {
            for i in (0..n).rev() {
                *dst.add(i) = *src.add(i);
            }
        }
    }
    dst
}

#[unsafe(no_mangle)]
unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    for i in 0..n {
        // SAFETY: the compiler calls this with a valid region of `n` bytes.
        unsafe { *dst.add(i) = c as u8 };
    }
    dst
}

#[unsafe(no_mangle)]
unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    for i in 0..n {
        // SAFETY: the compiler calls this with valid regions of `n` bytes.
        let (x, y) = unsafe { (*a.add(i), *b.add(i)) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
    }
    0
}

#[unsafe(no_mangle)]
unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: as for memcmp.
    unsafe { memcmp(a, b, n) }
}

//! A Hearth WebAssembly function with the exported-function ABI (`handler: main.handle`): pure compute,
//! bytes in, bytes out. The host calls `alloc(len)` for a buffer, copies the request body into it and
//! calls `handle(ptr, len)`, which owns that buffer and answers `(pointer << 32) | length`; once the host
//! has copied the answer it calls `dealloc(pointer, length)`. The instance is kept between requests.

/// A buffer of exactly `len` bytes for the host to write the request into.
#[no_mangle]
pub extern "C" fn alloc(len: usize) -> *mut u8 {
    Box::into_raw(vec![0u8; len].into_boxed_slice()) as *mut u8
}

/// Frees a buffer made by `alloc` or returned by `handle`.
///
/// # Safety
/// `ptr` and `len` must describe a buffer this module handed out and has not freed.
#[no_mangle]
pub unsafe extern "C" fn dealloc(ptr: *mut u8, len: usize) {
    drop(Box::from_raw(std::slice::from_raw_parts_mut(ptr, len)));
}

/// Counts the request's bytes, lines and words; answers JSON.
///
/// # Safety
/// `ptr` and `len` must be a buffer from `alloc`; it is freed here.
#[no_mangle]
pub unsafe extern "C" fn handle(ptr: *mut u8, len: usize) -> u64 {
    let input = Box::from_raw(std::slice::from_raw_parts_mut(ptr, len));
    let text = String::from_utf8_lossy(&input);
    let answer = format!(
        "{{\"bytes\":{},\"lines\":{},\"words\":{}}}",
        input.len(),
        text.lines().count(),
        text.split_whitespace().count()
    )
    .into_bytes()
    .into_boxed_slice();
    let length = answer.len() as u64;
    (Box::into_raw(answer) as *mut u8 as u64) << 32 | length
}

//! Stand-ins for libgcc_s's unwinder, compiled into the binaries only when they abort on panic.
//!
//! With `panic = "abort"` nothing ever unwinds; std still references the unwinder for panic backtraces, which
//! alone makes every start load `libgcc_s.so.1` (about 0.1 ms of the start overhead budget). Defining the
//! symbols here lets the linker's `--as-needed` drop the library. The only observable difference: a panic
//! message comes without a backtrace.

use std::ffi::c_void;

/// `_URC_END_OF_STACK`: "no frames", so a backtrace simply comes out empty.
const END_OF_STACK: i32 = 5;

#[no_mangle]
pub extern "C" fn _Unwind_Backtrace(_trace: *mut c_void, _arg: *mut c_void) -> i32 {
    END_OF_STACK
}

macro_rules! never_called {
    ($($name:ident),*) => {$(
        // Reached only while unwinding, which panic=abort rules out; abort rather than guess.
        #[no_mangle]
        pub extern "C" fn $name() -> usize {
            std::process::abort()
        }
    )*};
}

never_called!(
    _Unwind_GetDataRelBase,
    _Unwind_GetIP,
    _Unwind_GetIPInfo,
    _Unwind_GetLanguageSpecificData,
    _Unwind_GetRegionStart,
    _Unwind_GetTextRelBase,
    _Unwind_Resume,
    _Unwind_SetGR,
    _Unwind_SetIP
);

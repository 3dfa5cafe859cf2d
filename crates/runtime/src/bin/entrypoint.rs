//! `/entrypoint`: see docs/runtime.md. All logic lives in `airflow_runtime::entry`.
#![no_main]

// `no_main`: skip std's start-up (which would set SIGPIPE to ignored before we could record it) and start fast.
#[no_mangle]
pub extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    airflow_runtime::entry::main()
}

#[cfg(panic = "abort")]
#[path = "../unwind_stubs.rs"]
mod unwind_stubs;

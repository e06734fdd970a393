//! The `journeyd` binary: its command line (`cli/`) over the
//! [`journey_runtime`] library.

mod cli;

/// mimalloc instead of glibc's malloc: step workers, the committer and the
/// store hand allocations between threads all the time, which glibc's
/// per-thread arenas answer with heap trimming and the TLB shootdowns that
/// come with it. Built without transparent huge pages (`no_thp`), which
/// would double an idle runtime's resident memory.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}

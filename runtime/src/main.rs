//! The `journeyd` binary: see [`journey_runtime::cli`].

fn main() -> anyhow::Result<()> {
    journey_runtime::cli::main()
}

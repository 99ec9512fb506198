//! The `eventide-hub` binary: everything lives in the library; see `cli`.

fn main() -> std::process::ExitCode {
    eventide_hub::cli::main()
}

//! `eventide-load`: the hub's load tool and its reference fan-out server. The code
//! lives in `src/load/` (not part of the library); see `BENCHMARKS.md`.

#[path = "../load/mod.rs"]
mod load;

fn main() -> std::process::ExitCode {
    load::main()
}

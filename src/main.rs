//! The `geoexp` binary: everything lives in the library's `cli` module.

fn main() -> std::process::ExitCode {
    geoexp::cli::main()
}

//! placeholder
pub fn run(_spokes: usize, _seconds: u64) -> std::process::ExitCode {
    std::process::ExitCode::from(1)
}

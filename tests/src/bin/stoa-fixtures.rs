//! Writes test and demo fixtures: `stoa-fixtures sample-images <layout> <version>…`
//! and `stoa-fixtures bench-layout <layout> <images> <layer-MiB>`.

use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("sample-images") if args.len() >= 3 => {
            let images: Vec<_> = args[2..]
                .iter()
                .flat_map(|v| stoa_e2e::oci_fixture::sample_images(v))
                .collect();
            stoa_e2e::oci_fixture::write_layout(Path::new(&args[1]), &images)
        }
        Some("bench-layout") if args.len() == 4 => {
            let (Ok(n), Ok(mib)) = (args[2].parse::<usize>(), args[3].parse::<u64>()) else {
                eprintln!("stoa-fixtures: bench-layout <layout> <images> <layer-MiB>");
                return ExitCode::from(2);
            };
            stoa_e2e::oci_fixture::write_bench_layout(Path::new(&args[1]), n, mib << 20)
        }
        _ => {
            eprintln!("usage: stoa-fixtures sample-images <layout> <version>… | bench-layout <layout> <images> <layer-MiB>");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stoa-fixtures: error: {e}");
            ExitCode::from(1)
        }
    }
}
